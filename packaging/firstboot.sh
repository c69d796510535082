#!/usr/bin/env bash
# First boot of a noderuntime appliance: initialise the node from its provisioning file.
#
# Run once by noderuntime-firstboot.service (skipped once /etc/noderuntime/node.yaml exists).
# The provisioning file is, first found wins:
#   1. $NODERUNTIME_PROVISION, if set;
#   2. /etc/noderuntime/provision.yaml, placed on the image by the appliance builder;
#   3. provision.yaml or noderuntime/provision.yaml on a USB stick labelled NR-PROVISION
#      (any file system the kernel reads; FAT is fine). The stick is mounted read-only, and
#      read-write only to delete the enrolment token once it has been installed.
#
# The format is a flat YAML mapping, one `key: value` a line (this runs before any Python
# exists on the machine, so it is parsed here, strictly; unknown keys are an error):
#   nodeId: press-07                  required
#   site: plant-berlin                required
#   role: node                        node | hub (default node)
#   labels: line=3,zone=a             comma-separated key=value
#   enrollToken: press-07.token       fleet enrolment token file, relative to this file
#   peers: nats-leaf://hub:7422       comma-separated leaf-node peers to dial
#   leafPort: 7422                    accept leaf-node links from peers on this port
#   natsPort: 4222                    local NATS client port (0: any free port)
#   technicians: alice=scrypt-n14r8p1$…$…,bob=…
#                                     who may act at the console: NAME=PINHASH, comma-separated;
#                                     make each hash with `noderuntime technician hash` (the PIN
#                                     itself never goes on the image or the stick)
#   podmanSocket: /run/podman/podman.sock
#                                     the Podman API the node drives (the default is the one
#                                     Debian's podman.socket provides); `none`: the node
#                                     starts and supervises its own `podman system service`
#
# Exit status: 0 initialised; 1 no provisioning file, or it is invalid, or init failed.
# Nothing is written before the file has been read and checked; the token is deleted once the
# node holds its identity, so an image or stick that leaves the site carries no secret.
set -euo pipefail

NR="${NODERUNTIME_BIN:-/usr/local/bin/noderuntime}"
DATA_DIR="${NODERUNTIME_HOME:-/var/lib/noderuntime}"
CONFIG="${NODERUNTIME_CONFIG:-/etc/noderuntime/node.yaml}"
ETC_DIR="$(dirname "$CONFIG")"
API_SOCKET="${NODERUNTIME_API_SOCKET:-/run/noderuntime/api.sock}"
DEFAULT_PODMAN_SOCKET=/run/podman/podman.sock
USB_LABEL="${NODERUNTIME_USB_LABEL:-NR-PROVISION}"
USB_WAIT_S="${NODERUNTIME_USB_WAIT_S:-20}"
USB_MOUNT=/run/noderuntime-provision

log() { printf 'noderuntime-firstboot: %s\n' "$*"; }
die() {
    printf 'noderuntime-firstboot: error: %s\n' "$*" >&2
    exit 1
}

usb_mounted=0
cleanup() {
    if ((usb_mounted)); then
        umount "$USB_MOUNT" 2>/dev/null || umount -l "$USB_MOUNT" 2>/dev/null || true
        rmdir "$USB_MOUNT" 2>/dev/null || true
    fi
}
trap cleanup EXIT

# --- find the provisioning file -------------------------------------------------------------
find_usb_device() {
    command -v blkid >/dev/null || return 1
    local waited=0 dev
    while ((waited <= USB_WAIT_S)); do
        if dev="$(blkid -L "$USB_LABEL" 2>/dev/null)" && [[ -n "$dev" ]]; then
            printf '%s\n' "$dev"
            return 0
        fi
        ((waited >= USB_WAIT_S)) && break
        sleep 1
        waited=$((waited + 1))
    done
    return 1
}

provision=""
if [[ -n "${NODERUNTIME_PROVISION:-}" ]]; then
    provision="$NODERUNTIME_PROVISION"
    [[ -f "$provision" ]] || die "NODERUNTIME_PROVISION=$provision: no such file"
elif [[ -f "$ETC_DIR/provision.yaml" ]]; then
    provision="$ETC_DIR/provision.yaml"
elif dev="$(find_usb_device)"; then
    mkdir -p "$USB_MOUNT"
    mount -o ro "$dev" "$USB_MOUNT" || die "cannot mount $dev (label $USB_LABEL)"
    usb_mounted=1
    for candidate in "$USB_MOUNT/provision.yaml" "$USB_MOUNT/noderuntime/provision.yaml"; do
        if [[ -f "$candidate" ]]; then
            provision="$candidate"
            break
        fi
    done
    [[ -n "$provision" ]] || die "USB stick $dev ($USB_LABEL) holds no provision.yaml"
fi
if [[ -z "$provision" ]]; then
    die "no provisioning file: put one at $ETC_DIR/provision.yaml or on a USB stick labelled \
$USB_LABEL, then run: systemctl start noderuntime-firstboot"
fi
log "provisioning from $provision"

# --- parse and check it ---------------------------------------------------------------------
declare -A conf=()
known=" nodeId site role labels enrollToken peers leafPort natsPort podmanSocket technicians "
lineno=0
while IFS= read -r line || [[ -n "$line" ]]; do
    lineno=$((lineno + 1))
    line="${line%$'\r'}"
    # Comments: a '#' at the start or after whitespace (a '#' inside a value stays).
    [[ "$line" =~ ^[[:space:]]*# ]] && continue
    line="$(sed -E 's/[[:space:]]+#.*$//' <<<"$line")"
    [[ "$line" =~ ^[[:space:]]*$ ]] && continue
    [[ "$line" == "---" ]] && continue
    if [[ ! "$line" =~ ^([A-Za-z]+):[[:space:]]*(.*[^[:space:]])?[[:space:]]*$ ]]; then
        die "$provision:$lineno: expected 'key: value', got: $line"
    fi
    key="${BASH_REMATCH[1]}"
    value="${BASH_REMATCH[2]:-}"
    if [[ "$value" =~ ^\"(.*)\"$ || "$value" =~ ^\'(.*)\'$ ]]; then
        value="${BASH_REMATCH[1]}"
    fi
    [[ "$known" == *" $key "* ]] || die "$provision:$lineno: unknown key '$key' (known:$known)"
    [[ -z "${conf[$key]+set}" ]] || die "$provision:$lineno: '$key' is given twice"
    conf[$key]="$value"
done <"$provision"

id_re='^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$'
port_re='^[0-9]{1,5}$'
node_id="${conf[nodeId]:-}"
site="${conf[site]:-}"
role="${conf[role]:-node}"
[[ -n "$node_id" ]] || die "$provision: nodeId is required"
[[ -n "$site" ]] || die "$provision: site is required"
[[ "$node_id" =~ $id_re ]] || die "$provision: nodeId '$node_id': use 1-63 lowercase letters, \
digits, '-' or '.', starting and ending with a letter or digit"
[[ "$site" =~ $id_re ]] || die "$provision: site '$site': use 1-63 lowercase letters, digits, \
'-' or '.', starting and ending with a letter or digit"
[[ "$role" == node || "$role" == hub ]] || die "$provision: role must be node or hub, not '$role'"
for k in leafPort natsPort; do
    v="${conf[$k]:-}"
    if [[ -n "$v" ]] && { [[ ! "$v" =~ $port_re ]] || ((10#$v > 65535)); }; then
        die "$provision: $k must be a port number (0-65535), not '$v'"
    fi
done

token=""
if [[ -n "${conf[enrollToken]:-}" ]]; then
    token="${conf[enrollToken]}"
    [[ "$token" == /* ]] || token="$(dirname "$provision")/$token"
    [[ -f "$token" ]] || die "$provision: enrollToken $token: no such file"
fi

[[ -x "$NR" ]] || die "$NR is missing or not executable"

# --- host setup: only what this machine's kernel needs (noderuntime doctor decides) ---------
# On a hybrid-cgroup kernel Podman needs runc and lower default rlimits; `doctor --fix` detects
# that and writes /etc/containers/containers.conf.d/50-noderuntime.conf, or nothing at all.
# Its checks may still fail here (Podman's socket is not up before the node starts): not fatal.
if "$NR" doctor --help 2>/dev/null | grep -q -- '--fix'; then
    "$NR" --data-dir "$DATA_DIR" --config "$CONFIG" doctor --fix || true
else
    log "this noderuntime has no 'doctor --fix'; check Podman by hand (docs/operations.md)"
fi

# --- initialise -------------------------------------------------------------------------------
args=(--data-dir "$DATA_DIR" --config "$CONFIG" init
    --node-id "$node_id" --site "$site" --role "$role" --api-socket "$API_SOCKET")
podman_socket="${conf[podmanSocket]:-$DEFAULT_PODMAN_SOCKET}"
[[ "$podman_socket" == none ]] || args+=(--podman-socket "$podman_socket")
if [[ -n "${conf[labels]:-}" ]]; then
    IFS=',' read -r -a labels <<<"${conf[labels]}"
    for l in "${labels[@]}"; do
        l="$(sed -E 's/^[[:space:]]+|[[:space:]]+$//g' <<<"$l")"
        [[ -z "$l" ]] || args+=(--label "$l")
    done
fi
if [[ -n "${conf[peers]:-}" ]]; then
    IFS=',' read -r -a peers <<<"${conf[peers]}"
    for p in "${peers[@]}"; do
        p="$(sed -E 's/^[[:space:]]+|[[:space:]]+$//g' <<<"$p")"
        [[ -z "$p" ]] || args+=(--peer "$p")
    done
fi
if [[ -n "${conf[technicians]:-}" ]]; then
    IFS=',' read -r -a techs <<<"${conf[technicians]}"
    for t in "${techs[@]}"; do
        t="$(sed -E 's/^[[:space:]]+|[[:space:]]+$//g' <<<"$t")"
        [[ -z "$t" ]] || args+=(--technician "$t")
    done
fi
[[ -z "${conf[leafPort]:-}" ]] || args+=(--leaf-port "${conf[leafPort]}")
[[ -z "${conf[natsPort]:-}" ]] || args+=(--nats-port "${conf[natsPort]}")

enrolled_now=0
if [[ -n "$token" ]]; then
    if "$NR" init --help 2>/dev/null | grep -q -- '--enroll'; then
        args+=(--enroll "$token")
        enrolled_now=1
    else
        log "this noderuntime cannot enrol at init (no 'init --enroll'); the token is kept"
    fi
fi

mkdir -p "$ETC_DIR" "$(dirname "$API_SOCKET")"
chmod 0750 "$ETC_DIR"
"$NR" "${args[@]}" || die "noderuntime init failed (exit $?); fix $provision and run: \
systemctl start noderuntime-firstboot"

# --- secure the token -------------------------------------------------------------------------
remove_secret() {
    if command -v shred >/dev/null; then
        shred -u "$1" 2>/dev/null || rm -f "$1"
    else
        rm -f "$1"
    fi
}
if [[ -n "$token" ]]; then
    if ((enrolled_now)); then
        if ((usb_mounted)) && [[ "$token" == "$USB_MOUNT"/* ]]; then
            if mount -o remount,rw "$USB_MOUNT" 2>/dev/null && remove_secret "$token"; then
                log "deleted the enrolment token from the USB stick"
            else
                log "WARNING: could not delete $token from the USB stick: delete it by hand, \
it holds this node's private key"
            fi
        else
            remove_secret "$token"
            log "deleted the enrolment token $token"
        fi
    else
        # Keep it for a later `noderuntime enroll`, readable by root only, off the stick.
        pending="$DATA_DIR/pending-enrollment.token"
        install -d -m 0700 "$DATA_DIR"
        install -m 0600 "$token" "$pending"
        [[ "$token" == "$USB_MOUNT"/* ]] || remove_secret "$token"
        log "enrolment token kept at $pending (0600) for a later enrolment"
    fi
fi

# The file on the image has done its job; keep it (without the token) as a record.
if [[ "$provision" == "$ETC_DIR/provision.yaml" ]]; then
    mv "$provision" "$ETC_DIR/provision.yaml.applied"
    chmod 0600 "$ETC_DIR/provision.yaml.applied"
fi
log "node $node_id (site $site) initialised; config $CONFIG, data $DATA_DIR"

# Started by hand after boot (a stick plugged in late): bring the node up too.
if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
    systemctl --no-block start noderuntime.service || true
fi
