#!/usr/bin/env bash
# Install everything noderuntime needs on a Debian host, then run a node or the test suite.
#
#   bash scripts/setup.sh run    # install, then run a node with its embedded defaults
#   bash scripts/setup.sh test   # install, then run ruff, mypy and the whole pytest suite
#
# Safe to re-run: every step checks before it changes anything. Needs root for apt and for
# Podman's host configuration (rootless Podman is not what an appliance runs).
set -euo pipefail

MODE="${1:-}"
case "$MODE" in
    run | test) ;;
    *)
        echo "usage: bash scripts/setup.sh run|test" >&2
        exit 2
        ;;
esac
shift || true

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
VENV="$REPO/.venv"

log() { printf '[setup] %s\n' "$*" >&2; }

if [[ "$(id -u)" != 0 ]]; then
    echo "error: run as root (apt installs and Podman's host configuration need it)" >&2
    exit 1
fi

# --- system packages ------------------------------------------------------------------------
packages=(podman runc busybox-static python3 python3-venv ca-certificates)
if [[ "$MODE" == test ]]; then
    # tmux drives the TUI in a real terminal; debootstrap builds the clean appliance root;
    # iproute2 gives network namespaces for partition tests; prometheus gives promtool, which
    # checks the /metrics output; faketime steps one daemon's wall clock in the site tests.
    packages+=(tmux debootstrap iproute2 prometheus faketime)
fi
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- Python ----------------------------------------------------------------------------------
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "error: $("$PYTHON" --version 2>&1) is too old; noderuntime needs Python 3.11+" >&2
    exit 1
fi
if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating virtualenv $VENV"
    "$PYTHON" -m venv "$VENV"
fi
extras=""
[[ "$MODE" == test ]] && extras="[test,package]"
stamp="$VENV/.installed-$MODE"
if [[ ! -f "$stamp" || pyproject.toml -nt "$stamp" ]]; then
    log "installing noderuntime$extras into $VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check -e ".$extras"
    touch "$stamp"
fi

# --- Podman for this host ----------------------------------------------------------------------
"$VENV/bin/python" -m noderuntime.host.hostsetup
bash "$REPO/scripts/build-test-images.sh"

# --- the job ---------------------------------------------------------------------------------
if [[ "$MODE" == run ]]; then
    export NODERUNTIME_HOME="${NODERUNTIME_HOME:-/var/lib/noderuntime}"
    if [[ ! -f "$NODERUNTIME_HOME/node.yaml" ]]; then
        node_id="$(hostname | tr 'A-Z_' 'a-z-' | tr -cd 'a-z0-9.-' | cut -c1-63)"
        node_id="${node_id#[-.]}"
        node_id="${node_id%[-.]}"
        log "initialising node ${node_id:-node} (site default) in $NODERUNTIME_HOME"
        "$VENV/bin/noderuntime" init --node-id "${node_id:-node}" --site default
    fi
    log "starting the node (Ctrl-C stops it; workloads keep running)"
    exec "$VENV/bin/noderuntime" run "$@"
fi

log "ruff"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
log "mypy"
"$VENV/bin/mypy"
log "pytest"
set +e
# The slowest tests, so a CI log shows where the time budget goes.
"$VENV/bin/pytest" -q --durations=30 "$@"
rc=$?
set -e
if [[ $rc == 5 ]]; then
    echo "error: pytest collected no tests; that is a failure, not a pass" >&2
    exit 1
fi
exit $rc
