#!/usr/bin/env bash
# Build the images the tests and benchmarks run, from the host's static busybox: no registry needed.
# Idempotent: an image that already exists is left alone.
set -euo pipefail

IMAGE="${NODERUNTIME_TEST_IMAGE:-localhost/busybox:1}"

if podman image exists "$IMAGE"; then
    echo "test image $IMAGE present"
    exit 0
fi

# Debian's busybox-static puts a static binary here; a dynamic one would not run in a scratch image.
BUSYBOX=/bin/busybox
if [[ ! -x "$BUSYBOX" ]] || ldd "$BUSYBOX" >/dev/null 2>&1; then
    echo "error: no static busybox found; install the 'busybox-static' package" >&2
    exit 1
fi

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
cp "$BUSYBOX" "$ctx/busybox"
cat > "$ctx/Containerfile" <<'CF'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
CMD ["/bin/sh"]
CF
podman build --quiet -t "$IMAGE" -f "$ctx/Containerfile" "$ctx" >/dev/null
echo "built test image $IMAGE"
