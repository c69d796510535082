#!/usr/bin/env bash
# Build a noderuntime appliance root file system: minimal Debian + Podman + the one-file binary,
# its systemd units and the first-boot provisioning step. No Python on it.
#
#   bash packaging/image/build-rootfs.sh [options] ROOTDIR
#
#   --binary FILE      the noderuntime executable (default dist/noderuntime; build it with
#                      packaging/build.sh)
#   --provision FILE   put this provisioning file on the image as /etc/noderuntime/provision.yaml,
#                      with the enrolment token it names (enrollToken, relative to FILE)
#   --tar FILE         also pack the finished root into this tarball (for the disk-image step)
#   --base-only        stop after the cached Debian base (no noderuntime files)
#
#   DEBIAN_SUITE=bookworm  DEBIAN_MIRROR=http://deb.debian.org/debian
#   EXTRA_PACKAGES="linux-image-amd64 openssh-server ..."   more Debian packages in the base
#
# The debootstrapped base (Debian + Podman, ~50 s to make) is cached as a tarball under
# build/rootfs-cache/, keyed by suite, mirror and package list; later runs unpack it (~5 s).
# ROOTDIR must not exist or be empty. Needs root (debootstrap, file ownership).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SUITE="${DEBIAN_SUITE:-bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
CACHE_DIR="${NODERUNTIME_ROOTFS_CACHE:-$REPO/build/rootfs-cache}"
# Podman and what it needs to run containers as root; systemd as init; dbus for Podman's systemd
# cgroup manager; udev for device nodes and /dev/disk/by-label (the provisioning stick).
BASE_PACKAGES=(podman runc conmon netavark aardvark-dns iptables catatonit
    systemd systemd-sysv dbus udev ca-certificates)
read -r -a extra <<<"${EXTRA_PACKAGES:-}"
BASE_PACKAGES+=("${extra[@]}")

log() { printf '[rootfs] %s\n' "$*" >&2; }
die() {
    printf '[rootfs] error: %s\n' "$*" >&2
    exit 1
}
usage() {
    sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

binary="$REPO/dist/noderuntime"
provision=""
tar_out=""
base_only=0
root=""
while (($#)); do
    case "$1" in
        --binary) binary="$2"; shift 2 ;;
        --provision) provision="$2"; shift 2 ;;
        --tar) tar_out="$2"; shift 2 ;;
        --base-only) base_only=1; shift ;;
        -h | --help) usage 0 ;;
        -*) echo "unknown option $1" >&2; usage 2 ;;
        *) [[ -z "$root" ]] || usage 2; root="$1"; shift ;;
    esac
done
[[ -n "$root" ]] || usage 2
[[ "$(id -u)" == 0 ]] || die "run as root (debootstrap and file ownership need it)"
if [[ -e "$root" ]] && [[ -n "$(ls -A "$root")" ]]; then
    die "$root exists and is not empty"
fi
if ((!base_only)); then
    [[ -x "$binary" ]] || die "no executable at $binary: build it with packaging/build.sh"
fi
[[ -z "$provision" || -f "$provision" ]] || die "no provisioning file $provision"

# Refuse to delete a tree that still has something mounted inside it (a bound /dev, say).
safe_rm() {
    local dir mounts
    dir="$(realpath -m "$1")"
    mounts="$(awk -v d="$dir/" 'index($2 "/", d) == 1 { print $2 }' /proc/self/mounts)"
    [[ -z "$mounts" ]] || die "not removing $dir: still mounted inside it: $mounts"
    rm -rf --one-file-system "$dir"
}

# --- the Debian base, cached -------------------------------------------------------------------
key="$(printf '%s\n' v1 "$SUITE" "$MIRROR" "${BASE_PACKAGES[@]}" | sha256sum | cut -c1-12)"
base_tar="$CACHE_DIR/debian-$SUITE-$key.tar"
if [[ ! -f "$base_tar" ]]; then
    command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
    mkdir -p "$CACHE_DIR"
    work="$(mktemp -d "$CACHE_DIR/debootstrap.XXXXXX")"
    trap 'safe_rm "$work"' EXIT
    include="$(IFS=,; echo "${BASE_PACKAGES[*]}")"
    log "debootstrap $SUITE from $MIRROR (minbase + $include)"
    start=$SECONDS
    if ! debootstrap --variant=minbase --include="$include" "$SUITE" "$work/root" "$MIRROR" \
        >"$work/debootstrap.log" 2>&1; then
        tail -30 "$work/debootstrap.log" >&2
        [[ -f "$work/root/debootstrap/debootstrap.log" ]] && tail -30 "$work/root/debootstrap/debootstrap.log" >&2
        die "debootstrap failed (is $MIRROR reachable? set DEBIAN_MIRROR to a mirror that is)"
    fi
    rm -f "$work"/root/var/cache/apt/archives/*.deb
    log "debootstrap took $((SECONDS - start)) s; caching the base as $base_tar"
    tar -C "$work/root" --numeric-owner --xattrs --xattrs-include='*' -cpf "$work/base.tar" .
    mv "$work/base.tar" "$base_tar"
    safe_rm "$work"
    trap - EXIT
else
    log "using cached base $base_tar"
fi

mkdir -p "$root"
tar -C "$root" --numeric-owner --xattrs --xattrs-include='*' -xpf "$base_tar"
if ((base_only)); then
    log "base root in $root"
    exit 0
fi

# --- noderuntime ---------------------------------------------------------------------------------
install -D -m 0755 "$binary" "$root/usr/local/bin/noderuntime"
install -D -m 0755 "$REPO/packaging/firstboot.sh" "$root/usr/local/lib/noderuntime/firstboot.sh"
for unit in noderuntime.service noderuntime-firstboot.service; do
    install -D -m 0644 "$REPO/packaging/systemd/$unit" "$root/etc/systemd/system/$unit"
    mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
    ln -sf "/etc/systemd/system/$unit" "$root/etc/systemd/system/multi-user.target.wants/$unit"
done
# The node drives Podman through the API socket Debian's podman.socket provides.
mkdir -p "$root/etc/systemd/system/sockets.target.wants"
ln -sf /lib/systemd/system/podman.socket "$root/etc/systemd/system/sockets.target.wants/podman.socket"
if [[ -f "$REPO/docs/operations.md" ]]; then
    install -D -m 0644 "$REPO/docs/operations.md" "$root/usr/local/share/doc/noderuntime/operations.md"
fi
install -d -m 0750 "$root/etc/noderuntime"
install -d -m 0700 "$root/var/lib/noderuntime"

# Every appliance made from this image gets its own machine id on first boot.
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
echo noderuntime >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tnoderuntime\n::1\tlocalhost ip6-localhost ip6-loopback\n' \
    >"$root/etc/hosts"

if [[ -n "$provision" ]]; then
    install -m 0600 "$provision" "$root/etc/noderuntime/provision.yaml"
    token="$(sed -nE 's/^enrollToken:[[:space:]]*["'\'']?([^"'\''#[:space:]]+).*$/\1/p' "$provision")"
    if [[ -n "$token" && "$token" != /* ]]; then
        src="$(dirname "$provision")/$token"
        [[ -f "$src" ]] || die "$provision names enrollToken $token, but $src does not exist"
        install -D -m 0600 "$src" "$root/etc/noderuntime/$token"
    fi
    log "provisioning file placed: the node initialises itself on first boot"
fi

"$root/usr/local/bin/noderuntime" --version | sed 's/^/[rootfs] /' >&2 || true
log "appliance root in $root ($(du -sh --one-file-system "$root" | cut -f1))"

if [[ -n "$tar_out" ]]; then
    tar -C "$root" --numeric-owner --xattrs --xattrs-include='*' -cpf "$tar_out" .
    log "packed into $tar_out"
fi
