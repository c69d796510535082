"""The `noderuntime` command. Every command but init/run/doctor/version is a control API client.

Exit codes: 0 success, 1 error, 2 bad usage, 3 the node is not running.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from noderuntime.cli import audit as cli_audit
from noderuntime.cli import backup
from noderuntime.cli import fleet as cli_fleet
from noderuntime.cli import fleetview as cli_fleetview
from noderuntime.cli import offline as cli_offline
from noderuntime.cli import policy as cli_policy
from noderuntime.cli import rekey as cli_rekey
from noderuntime.cli import revoke as cli_revoke
from noderuntime.cli import rollout as cli_rollout
from noderuntime.cli import secret as cli_secret
from noderuntime.cli import store as cli_store
from noderuntime.cli.common import (
    _config_file,
    _data_dir,
    check_skipped_config,
    decode_input,
    read_input,
    submit_signed,
)
from noderuntime.cli.common import api_client as _client
from noderuntime.cli.common import call as _call
from noderuntime.cli.jsontext import json_text
from noderuntime.errors import DaemonNotRunningError, InvalidInputError, NodeRuntimeError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3
# Error codes (local or from the node) that mean "your input is invalid; nothing was changed":
# scripts tell them from failures by exit code 2 (docs/json-output.md).
INVALID_INPUT_CODES = frozenset(
    {
        "invalid_spec",
        "bad_request",
        "config",
        "invalid_backup",
        "invalid_enrollment_file",
        "invalid_image_archive",
        "request_too_large",
    }
)


# --- output helpers -----------------------------------------------------------------------


def age(ts: float | None, now: float | None = None) -> str:
    if not ts:
        return "-"
    secs = max(0, int((now or time.time()) - ts))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs // size}{unit}"
    return f"{secs}s"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = ["   ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def emit(data: Any, fmt: str, render_table: Callable[[Any], str]) -> None:
    if fmt == "json":
        print(json_text(data))
    elif fmt == "yaml":
        import yaml  # here, not at the top: most commands never need it (start-up time)

        print(yaml.safe_dump(data, sort_keys=True), end="")
    else:
        print(render_table(data))


def render_workloads(views: list[dict[str, Any]]) -> str:
    if not views:
        return "No workloads. Apply one with `noderuntime apply -f FILE`."
    rows = []
    for v in views:
        rows.append(
            [
                v["name"],
                v["phase"],
                v.get("health") or "-",
                str(v["restarts"]),
                (v.get("container_id") or "-")[:12],
                age(v.get("since")),
                v.get("image") or "-",
                (v.get("message") or "")
                + (f" [status not stored: {v['store_problem']}]" if v.get("store_problem") else ""),
            ]
        )
    return table(
        ["NAME", "PHASE", "HEALTH", "RESTARTS", "CONTAINER", "SINCE", "IMAGE", "MESSAGE"], rows
    )


def render_status(s: dict[str, Any]) -> str:
    n, st, pm, wl = s["node"], s["store"], s["podman"], s["workloads"]
    phases = ", ".join(f"{k} {v}" for k, v in wl["phases"].items() if v) or "none"
    podman = "connected" if pm["connected"] else f"NOT CONNECTED ({pm['error'] or 'starting'})"
    lines = [
        f"Node:       {n['id']} (site {n['site']}, role {n['role']}, v{n['version']})",
        f"Uptime:     {age(n['started_at'])}  pid {n['pid']}",
        f"Data dir:   {n['data_dir']}",
        f"Store:      {st['path']}  {st['updates']} updates, {st['snapshots']} snapshots, "
        f"{st['size_bytes'] // 1024} KiB, "
        + ("healthy" if st.get("healthy", True) else "UNHEALTHY"),
        f"Podman:     {podman}  ({pm['socket']}"
        + (f", supervised, {pm['service_restarts']} restarts" if pm["supervised"] else "")
        + ")",
        f"Workloads:  {wl['desired']} desired; {phases}",
        f"Reconciler: {s['reconciler']['passes']} passes, "
        f"last {age(s['reconciler']['last_pass_at'])} ago, "
        + ("converged" if s["reconciler"]["converged"] else "converging"),
    ]
    if wl.get("invalid"):
        lines.append(f"Invalid:    {wl['invalid']} stored workload spec(s) do not validate")
    if last := st.get("last_write_error"):
        lines.append(f"Last write error: {age(last.get('at'))} ago: {last.get('message')}")
    return "\n".join(
        lines
        + render_store_problem(st)
        + render_quarantined(st)
        + render_sync_alerts(s.get("sync") or {})
        + render_audit(s.get("audit") or {})
    )


def render_audit(a: dict[str, Any]) -> list[str]:
    """The audit line, and one line per node a hub found with its audit log cut or rewritten."""
    if not a.get("enabled"):
        return []
    cp = a.get("last_checkpoint")
    signed = f"checkpoint at entry {cp['seq']} {age(cp['ts'])} ago" if cp else "no checkpoint yet"
    lines = [f"Audit:      {a['entries']} entries, {signed}"]
    if a.get("error"):
        lines.append(f"AUDIT LOG NOT WRITTEN: {a['error']}")
    for alert in a.get("witness_alerts") or []:
        lines.append(
            f"AUDIT TAMPERED: {alert['reason']} (seen {age(alert['ts'])} ago; "
            "docs/operations.md, Audit trail)"
        )
    return lines


def render_quarantined(st: dict[str, Any], shown: int = 10) -> list[str]:
    """Lines naming records set aside (no reader can use them) and how to remove them."""
    records = st.get("quarantined") or []
    lines = [
        f"QUARANTINED:    {q['doc']} {q['map']} {q['key']!r} ({q['reason']}); everything else "
        f"goes on. Remove: noderuntime record rm {q['doc']} {q['map']} {shlex.quote(q['key'])}"
        for q in records[:shown]
    ]
    more = max(st.get("quarantined_total", len(records)), len(records)) - len(lines)
    if more > 0:
        lines.append(f"                and {more} more (`noderuntime status -o json`)")
    return lines


def _reason(revoked: dict[str, Any]) -> str:
    return f" ({revoked['reason']})" if revoked.get("reason") else ""


def render_sync_alerts(sync: dict[str, Any]) -> list[str]:
    """Lines for what sync wants an operator to decide: a cloned enrolment, a revoked key."""
    lines = []
    revoked = sync.get("revoked")
    if revoked:
        lines.append(
            f"REVOKED:        this node's key was revoked by {revoked.get('by') or 'an operator'}"
            f" {age(revoked.get('at'))} ago{_reason(revoked)}: every node refuses it; the "
            "workloads keep running here (docs/operations.md, Revocation)"
        )
    if sync.get("suspended"):
        lines.append(f"SYNC SUSPENDED: {sync['suspended']}")
    for clone in sync.get("clones") or []:
        instances = ", ".join(
            i["instance"] + (" (newcomer, refused)" if i["newcomer"] else "")
            for i in clone.get("instances", [])
        )
        when = f"detected {age(clone.get('detected_at'))} ago"
        state = f"both live, {when}" if clone.get("live") else f"{when}, one silent since"
        lines.append(
            f"CLONED NODE:    {clone['node']} has two instances ({state}): {instances}; stop one "
            "and restart the one to keep (docs/operations.md, Cloned enrolment)"
        )
    return lines


def render_store_problem(st: dict[str, Any]) -> list[str]:
    """Lines saying why the store is unhealthy, and a hold with what it spares and how to end it."""
    hold = st.get("hold")
    if not hold:
        return [] if st.get("healthy", True) else [f"STORE:      UNHEALTHY: {st.get('error')}"]
    spared = ", ".join(hold.get("workloads") or []) or "none so far"
    return [
        f"STORE HELD: {hold['reason']}",
        f"            nothing is stopped or removed; {hold.get('containers', 0)} container(s) "
        f"of this node kept as they are (workloads spared: {spared})",
        f"            since {age(hold.get('since'))} ago; to decide: {hold.get('decide', '')}",
    ]


def _write_by(w: dict[str, Any]) -> str:
    what = "deletion" if w.get("deleted") else "write"
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(w["at"])) if w.get("at") else "?"
    return f"{w['by']}'s {what} at {when} (HLC {w['hlc']})"


def _lost_line(c: dict[str, Any]) -> str:
    return f"{c['doc']} {c['record']}: {_write_by(c['lost'])} lost to {_write_by(c['won'])}"


def render_describe(v: dict[str, Any]) -> str:
    lines = [
        f"Name:        {v['name']}",
        f"Phase:       {v['phase']}" + (f"  ({v['message']})" if v.get("message") else ""),
        f"Health:      {v.get('health') or '-'}",
        f"Restarts:    {v['restarts']}",
        f"Container:   {v.get('container_id') or '-'}",
        f"Since:       {age(v.get('since'))}",
        f"Spec hash:   {v.get('spec_hash')}",
        f"Enabled:     {v.get('enabled')}",
    ]
    if v.get("provenance"):
        lines.append("Overrides:")
        lines += [f"  {k}: from {src}" for k, src in sorted(v["provenance"].items())]
    if v.get("problems"):
        lines.append("Problems:")
        lines += [f"  {p}" for p in v["problems"]]
    if v.get("concurrent_writes"):
        lines.append("Concurrent writes (the later one is in effect):")
        lines += [f"  {_lost_line(c)}" for c in v["concurrent_writes"]]
    import yaml

    lines.append("Spec:")
    lines += ["  " + ln for ln in yaml.safe_dump(v.get("spec"), sort_keys=False).splitlines()]
    if v.get("events"):
        lines.append("Events:")
        for e in v["events"][-15:]:
            lines.append(f"  {age(e['ts'])} ago  {e['kind']:<10} {e['message']}")
    return "\n".join(lines)


# --- commands -----------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    from noderuntime.config.model import (
        NodeConfig,
        NodePaths,
        Role,
        check_socket_path,
        parse_label_args,
        save_config,
        split_host_port,
        validate_id,
    )
    from noderuntime.errors import AlreadyInitializedError
    from noderuntime.identity import keys as identity
    from noderuntime.identity.principals import node_principal
    from noderuntime.identity.technicians import TechnicianStore, parse_technician_arg

    data_dir = _data_dir(args)
    config_file = _config_file(args)
    paths = NodePaths(data_dir, config_file=config_file)
    if paths.config_file.exists() or paths.identity_file.exists():
        if args.exist_ok and paths.config_file.exists():
            print(f"node already initialised in {data_dir}; leaving it as it is")
            return EXIT_OK
        raise AlreadyInitializedError(
            f"{data_dir} already holds a node ({paths.config_file.name} or "
            f"{paths.identity_file.name} exists); refusing to overwrite its identity. "
            "Use another --data-dir, or remove the directory to start over"
        )
    if args.metrics_address is not None:
        try:
            split_host_port(args.metrics_address)
        except ValueError as exc:
            raise InvalidInputError(f"--metrics-address: {exc}") from exc
    enrollment = cli_fleet.prepare_init_enrollment(args)  # checks the token, writes nothing
    technicians = [parse_technician_arg(t) for t in args.technician or []]
    config = NodeConfig(
        **cli_fleet.init_config_kwargs(args),
        node_id=validate_id("node id", args.node_id),
        site=validate_id("site", args.site),
        role=Role(args.role),
        labels=parse_label_args(args.label or []),
        podman_socket=args.podman_socket,
        api_socket=args.api_socket,
        metrics_address=args.metrics_address,
    )
    paths = NodePaths(data_dir, config, config_file=config_file)
    check_socket_path(paths.api_socket)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(data_dir, 0o700)
    ident = enrollment.identity() or identity.generate(node_principal(config.node_id))
    written: list[Path] = []
    try:
        identity.save_key(paths.identity_file, ident)
        written.append(paths.identity_file)
        save_config(paths.config_file, config)
        written.append(paths.config_file)
        fleet_id = enrollment.install(data_dir, config.node_id, config.site)
        if technicians:
            TechnicianStore(data_dir).add_hashed(technicians)
    except BaseException:
        # A half-initialised node would make every retry refuse ("already holds a node").
        for path in written:
            path.unlink(missing_ok=True)
        raise
    if technicians:
        print(f"technicians who may act at the console: {', '.join(t[0] for t in technicians)}")
    if fleet_id:
        print(f"enrolled in {fleet_id}")
        _delete_token(Path(args.enroll))
    print(f"initialised node {config.node_id} (site {config.site}) in {data_dir}")
    print(f"identity {ident.key_id}; start it with `noderuntime --data-dir {data_dir} run`")
    return EXIT_OK


def _delete_token(token: Path) -> None:
    """An enrolment token is single-use: it holds the node's private key, and a second machine
    enrolled from it would be a clone of this node (docs/operations.md, Cloned enrolment)."""
    try:
        token.unlink()
    except OSError as exc:
        print(
            f"could not delete the token {token} ({exc.strerror}): delete it by hand; it holds "
            "this node's private key and must not enrol a second machine",
            file=sys.stderr,
        )
        return
    print(f"deleted the token {token}: a token enrols one machine, once")


def cmd_run(args: argparse.Namespace) -> int:
    from noderuntime.config.model import load_config
    from noderuntime.node.daemon import run_forever

    data_dir = _data_dir(args)
    config = load_config(data_dir, _config_file(args))
    import logging  # here: only the daemon logs

    # --log-level is about noderuntime; libraries (aiosqlite logs every statement at DEBUG)
    # stay at INFO so a debug log remains readable.
    level = getattr(logging, args.log_level.upper())
    logging.basicConfig(
        level=max(level, logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("noderuntime").setLevel(level)
    for noisy in ("urllib3", "aiosqlite", "nats"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    run_forever(data_dir, config, logging.getLogger("noderuntime"), config_file=_config_file(args))
    return EXIT_OK


def cmd_apply(args: argparse.Namespace) -> int:
    from noderuntime.api.protocol import MAX_MESSAGE_BYTES

    text, source = read_input(args.filename, limit=MAX_MESSAGE_BYTES)
    if args.dry_run:
        from noderuntime.spec.parse import parse_workloads

        for w in parse_workloads(text, source):
            print(f"workload/{w.metadata.name} valid (dry run, nothing recorded)")
        return EXIT_OK
    # The node validates (it is the authority); its errors name our file, field and line.
    params: dict[str, Any] = {"yaml": text, "source": source}
    operator = cli_fleet.operator_from_args(args)
    if operator is not None:
        author = {"author": operator[0].name}  # the revision names the operator who signs it
        reply = _call(args, "workloads.apply", params | {"prepare": True} | author)
        if reply["prepared"]["data"] is not None:
            _submit_signed(args, operator, reply["prepared"])
        results = reply["results"]
    else:
        results = _call(args, "workloads.apply", params)
    for r in results:
        print(f"workload/{r['name']} {r['result']}")
    return EXIT_OK


def cmd_delete(args: argparse.Namespace) -> int:
    operator = cli_fleet.operator_from_args(args)
    if operator is not None:
        r = _call(args, "workloads.delete", {"name": args.name, "prepare": True})
        _submit_signed(args, operator, r["prepared"])
    else:
        r = _call(args, "workloads.delete", {"name": args.name})
    print(f"workload/{r['name']} deleted")
    return EXIT_OK


def cmd_lock(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {
        "workload": args.workload,
        "fields": args.fields,
        "unlock": args.unlock,
    }
    operator = cli_fleet.operator_from_args(args)
    if operator is not None:
        r = _call(args, "policy.lock", {**params, "prepare": True})
        if r["prepared"]["data"] is not None:
            _submit_signed(args, operator, r["prepared"])
    else:
        r = _call(args, "policy.lock", params)
    locked = ", ".join(r["locked"]) or "nothing"
    print(f"workload/{r['workload']} locked fields: {locked}")
    return EXIT_OK


def _submit_signed(args: argparse.Namespace, operator: Any, prepared: dict[str, Any]) -> None:
    """Sign an update the node prepared with the operator's key; the node verifies it."""
    ident, credential = operator
    submit_signed(args, ident, credential, prepared)


def render_nodes(nodes: list[dict[str, Any]]) -> str:
    if not nodes:
        return "No nodes known."
    rows = []
    for n in nodes:
        wl = n.get("workloads") or {}
        counts = ", ".join(f"{k} {v}" for k, v in sorted(wl.items()) if v) or "-"
        state = "self" if n.get("self") else ("up" if n.get("up") else "down")
        rows.append(
            [
                n["node"],
                n.get("site") or "-",
                n.get("role") or "-",
                state,
                age(n.get("last_seen")),
                n.get("health") or "-",
                counts,
            ]
        )
    return table(["NODE", "SITE", "ROLE", "STATE", "LAST SEEN", "HEALTH", "WORKLOADS"], rows)


def render_peers(data: dict[str, Any]) -> str:
    if not data.get("enabled"):
        return "Sync is off: this node is not enrolled in a fleet (see `noderuntime fleet`)."
    lines = []
    links = [link for link in data.get("links", []) if "peer" in link]
    if links:
        lines.append(
            table(
                ["LINK", "DIRECTION", "STATE", "SINCE", "BYTES IN", "BYTES OUT"],
                [
                    [
                        link["peer"],
                        link["direction"],
                        "up" if link["up"] else "down",
                        age(link.get("since")),
                        str(link.get("in_bytes", 0)),
                        str(link.get("out_bytes", 0)),
                    ]
                    for link in links
                ],
            )
        )
        lines.append("")
    rows = [
        [
            p["node"],
            p.get("site") or "-",
            "up" if p["up"] else "down",
            age(p.get("up_since")) if p["up"] else "-",
            age(p.get("last_heard")),
            str(p["bytes_in"]),
            str(p["bytes_out"]),
            age(p.get("last_sync")),
            str(p["behind_by"]),
        ]
        for p in data.get("peers", [])
    ]
    headers = ["PEER", "SITE", "STATE", "UP FOR", "LAST HEARD", "BYTES IN", "BYTES OUT"]
    headers += ["LAST SYNC", "BEHIND BY"]
    lines.append(table(headers, rows) if rows else "No peers heard yet.")
    sync = data.get("sync", {})
    rejected = sync.get("rejections") or {}
    if rejected:
        lines.append("Rejected: " + ", ".join(f"{k} {v}" for k, v in sorted(rejected.items())))
    return "\n".join(lines)


def cmd_peers(args: argparse.Namespace) -> int:
    emit(_call(args, "sync.peers"), args.output, render_peers)
    return EXIT_OK


def cmd_get(args: argparse.Namespace) -> int:
    fleet_only = args.site or args.node or args.selector
    if fleet_only and not args.fleet:
        raise InvalidInputError("--site, --node and -l go with --fleet")
    if args.output == "wide" and not args.fleet:
        raise InvalidInputError("-o wide goes with --fleet")
    if args.kind in ("site", "sites"):
        sites = _call(args, "fleet.sites")
        emit(sites, args.output, lambda s: cli_fleetview.render_sites(s, table))
        return EXIT_OK
    if args.fleet:
        if args.kind not in ("workload", "workloads") or args.name:
            raise InvalidInputError("--fleet lists workloads: `get workloads --fleet`")
        params = cli_fleetview.fleet_params(args)
        if args.output == "json":
            # The hub renders -o json's text itself; a node from before that sends rows.
            params["render"] = "json"
        rows = _call(args, "fleet.workloads", params, attached=args.output == "json")
        if isinstance(rows, bytes):
            sys.stdout.flush()
            sys.stdout.buffer.write(rows + b"\n")
            return EXIT_OK
        wide = args.output == "wide"
        fmt = "table" if wide else args.output
        emit(rows, fmt, lambda r: cli_fleetview.render_fleet_rows(r, table, wide=wide))
        return EXIT_OK
    if args.kind in ("node", "nodes"):
        nodes = _call(args, "nodes.list")
        if args.name:
            nodes = [n for n in nodes if n["node"] == args.name]
            if not nodes:
                raise NodeRuntimeError(f"no node {args.name!r} known here")
        emit(nodes, args.output, render_nodes)
        return EXIT_OK
    if args.name:
        view = _call(args, "workloads.get", {"name": args.name})
        emit(view, args.output, lambda v: render_workloads([v]))
    else:
        emit(_call(args, "workloads.list"), args.output, render_workloads)
    return EXIT_OK


def cmd_describe(args: argparse.Namespace) -> int:
    emit(_call(args, "workloads.get", {"name": args.name}), args.output, render_describe)
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    emit(_call(args, "node.status"), args.output, render_status)
    return EXIT_OK


def cmd_logs(args: argparse.Namespace) -> int:
    method, params = "workloads.logs", {"name": args.name, "follow": args.follow, "tail": args.tail}
    if args.node:
        method, params = "fleet.logs", cli_fleetview.remote_logs_params(args)

    async def go() -> None:
        async with _client(args) as client:
            async for line in client.stream(method, params):
                sys.stdout.write(line + "\n")
                sys.stdout.flush()

    import asyncio  # not at the top: one-shot commands never load it

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(go())
    return EXIT_OK


def cmd_action(method: str, verb: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        if cli_fleet.operator_from_args(args) is not None:
            # Stop/start/restart act on this node and are signed by it: silently dropping the
            # operator's --as would misattribute the change.
            raise NodeRuntimeError(
                f"{method} acts on this node alone and is signed by the node; drop --as "
                "(or unset NODERUNTIME_AS)"
            )
        _call(args, method, {"name": args.name})
        print(f"workload/{args.name} {verb}")
        return EXIT_OK

    return run


def _override_value(text: str) -> Any:
    """The VALUE argument of `override set`, read as YAML, bounded like every stored value."""
    import yaml

    from noderuntime import codec

    try:
        value = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError) as exc:
        problem = "nested too deeply" if isinstance(exc, RecursionError) else "not valid YAML"
        raise InvalidInputError(f"override VALUE is {problem}") from None
    try:
        codec.check_value(value)
    except codec.DecodeError as exc:
        raise InvalidInputError(f"override VALUE is {exc}") from None
    return value


def cmd_override(args: argparse.Namespace) -> int:
    operator = cli_fleet.operator_from_args(args)
    if args.override_cmd == "set":
        method = "overrides.set"
        params = {
            "workload": args.workload,
            "field": args.field,
            "value": _override_value(args.value),
        }
    else:
        method = "overrides.remove"
        params = {"workload": args.workload, "field": args.field}
    params["scope"] = args.scope
    if operator is not None:
        # Site overrides signed by the operator (the node refuses --as on a node override).
        r = _call(args, method, params | {"prepare": True})
        if r["prepared"]["data"] is not None:
            _submit_signed(args, operator, r["prepared"])
    else:
        r = _call(args, method, params)
    if args.override_cmd == "set":
        where = "on this node" if args.scope == "node" else "for every node of this site"
        print(f"workload/{r['workload']} override {r['field']}={json.dumps(r['value'])} {where}")
    else:
        print(f"workload/{args.workload} {args.scope} override {args.field} removed")
    return EXIT_OK


def cmd_record(args: argparse.Namespace) -> int:
    """Remove one record of a document (one `status` lists as set aside)."""
    operator = cli_fleet.operator_from_args(args)
    params = {"doc": args.doc, "map": args.map, "key": args.key}
    if operator is not None:
        r = _call(args, "records.remove", params | {"prepare": True})
        if r["prepared"]["data"] is not None:
            _submit_signed(args, operator, r["prepared"])
        who = f"signed by operator {operator[0].name}"
    else:
        _call(args, "records.remove", params)
        who = "signed by this node"
    print(f"removed {args.map} record {args.key!r} of {args.doc} ({who})")
    return EXIT_OK


def cmd_events(args: argparse.Namespace) -> int:
    if args.fleet:
        return cli_fleetview.fleet_events(args, _client, table)
    if args.follow:
        raise InvalidInputError("--follow goes with --fleet (this node's events: without it)")
    events = _call(args, "events.list", {"workload": args.workload or None, "limit": args.limit})

    def render(evs: list[dict[str, Any]]) -> str:
        return table(
            ["AGE", "WORKLOAD", "KIND", "MESSAGE"],
            [[age(e["ts"]), e["workload"] or "-", e["kind"], e["message"]] for e in evs],
        )

    emit(events, args.output, render)
    return EXIT_OK


def cmd_history(args: argparse.Namespace) -> int:
    entries = _call(args, "history.list", {"limit": args.limit, "status": args.all})

    def render(es: list[dict[str, Any]]) -> str:
        # People's actions first (a technician's, an operator's), then the nodes' own.
        es = sorted(es, key=lambda e: not e.get("person", True))
        return table(
            ["AGE", "DOC", "BY", "CHANGE"],
            [
                [
                    age(e["ts"]),
                    e["doc"],
                    e["author"] + (f" for {e['on_behalf']}" if e.get("on_behalf") else ""),
                    (e["summary"] or f"{e['size_bytes']} bytes")
                    + (
                        f" (lost to {e['lost_to']['by']}'s concurrent change)"
                        if e.get("lost_to")
                        else ""
                    ),
                ]
                for e in es
            ],
        )

    emit(entries, args.output, render)
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from noderuntime.host.doctor import fix_host, render_checks, run_checks

    if args.fix:
        for line in fix_host():
            print(f"fix: {line}")
    from noderuntime.config.model import NodePaths, load_config
    from noderuntime.errors import ConfigError, NotInitializedError
    from noderuntime.host.doctor import Check, Status

    data_dir = _data_dir(args)
    socket_path = None
    podman_bin = "podman"
    api_socket: Path | None = None
    bad_config: Check | None = None
    try:
        config = load_config(data_dir, _config_file(args))
        podman_bin = config.podman_bin
        api_socket = NodePaths(data_dir, config).api_socket
        if config.podman_socket:
            socket_path = str(NodePaths(data_dir, config).podman_socket(config))
    except NotInitializedError:
        pass  # doctor checks a host before `init` too (first boot runs it first)
    except ConfigError as exc:
        # The host checks still run (with default settings); the config is named first.
        fix = "correct it, or point --config / NODERUNTIME_CONFIG at the node's node.yaml"
        bad_config = Check("node config", Status.FAIL, str(exc), fix)
    checks = run_checks(
        data_dir, podman_socket=socket_path, podman_bin=podman_bin, api_socket=api_socket
    )
    if bad_config is not None:
        checks.insert(0, bad_config)
    if args.output == "json":
        print(json.dumps([c.to_dict() for c in checks], indent=2))
    else:
        print(render_checks(checks))
    if bad_config is not None:
        return EXIT_USAGE  # invalid input: the file given as node.yaml
    return EXIT_ERROR if any(c.status.value == "fail" for c in checks) else EXIT_OK


def _read_pin(args: argparse.Namespace, who: str) -> str:
    if args.pin_stdin:
        return decode_input(sys.stdin.buffer.readline(), "the PIN on stdin").rstrip("\n")
    import getpass

    pin = getpass.getpass(f"PIN for {who}: ")
    if getpass.getpass("again: ") != pin:
        raise NodeRuntimeError("the PINs differ; nothing was changed")
    return pin


def cmd_technician(args: argparse.Namespace) -> int:
    from noderuntime.config.model import load_config
    from noderuntime.identity.technicians import TechnicianStore, hash_pin, parse_technician_arg

    if args.tech_cmd == "hash":
        # Needs no node: an appliance builder runs it to fill a provisioning file.
        print(hash_pin(_read_pin(args, "the technician")))
        return EXIT_OK
    data_dir = _data_dir(args)
    load_config(data_dir, _config_file(args))  # refuses clearly on an uninitialised dir
    store = TechnicianStore(data_dir)
    if args.tech_cmd == "list":
        for name in store.names():
            print(name)
        return EXIT_OK
    if args.tech_cmd == "rm":
        if not store.remove(args.name):
            raise NodeRuntimeError(f"no technician {args.name!r}")
        print(f"technician {args.name} removed")
        return EXIT_OK
    if args.pin_hash:
        store.add_hashed(
            [parse_technician_arg(f"{args.name}={args.pin_hash}")], replace=args.replace
        )
    else:
        store.add(args.name, _read_pin(args, args.name), replace=args.replace)
    print(f"technician {args.name} can now authorise changes at this node's console")
    return EXIT_OK


def cmd_version(args: argparse.Namespace) -> int:
    from noderuntime.version import version_report

    print(version_report())
    return EXIT_OK


def cmd_tui(args: argparse.Namespace) -> int:
    from noderuntime.config.model import NodePaths, load_config
    from tui.app import run_tui

    data_dir = _data_dir(args)
    config = load_config(data_dir, _config_file(args))
    return run_tui(NodePaths(data_dir, config).api_socket)


# --- parser -------------------------------------------------------------------------------


def add_as_option(s: argparse.ArgumentParser) -> None:
    """``--as FLEETDIR`` after an operator command too; it leaves a global ``--as`` alone."""
    s.add_argument(
        "--as",
        dest="as_operator",
        metavar="FLEETDIR",
        default=argparse.SUPPRESS,
        help="sign as the operator in this fleet directory (same as the global --as)",
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="noderuntime",
        description="Local-first runtime for edge nodes.",
        epilog="The node's directory comes from --data-dir, else $NODERUNTIME_HOME, "
        "else /var/lib/noderuntime.",
    )
    p.add_argument("--data-dir", help="the node's data directory")
    p.add_argument(
        "--config", help="node config file (default: <data-dir>/node.yaml; env NODERUNTIME_CONFIG)"
    )
    p.add_argument("--version", action="store_true", help="print versions and exit")
    cli_fleet.add_global_arguments(p)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def out(
        sp: argparse.ArgumentParser, choices: tuple[str, ...] = ("table", "json", "yaml")
    ) -> None:
        sp.add_argument("-o", "--output", choices=choices, default=choices[0])

    s = sub.add_parser("init", help="create a node: config and identity key")
    s.add_argument("--api-socket", help="control socket path (default: <data-dir>/api.sock)")
    s.add_argument("--node-id", required=True)
    s.add_argument("--site", required=True)
    s.add_argument(
        "--role",
        choices=["node", "hub", "witness"],
        default="node",
        help="witness: a site-cluster voter that runs no workloads (enrolled as a node)",
    )
    s.add_argument("--label", action="append", metavar="KEY=VALUE", help="node label (repeatable)")
    s.add_argument("--podman-socket", help="use this Podman API socket instead of supervising one")
    s.add_argument(
        "--metrics-address",
        metavar="HOST:PORT",
        help="serve Prometheus metrics on http://HOST:PORT/metrics (node.yaml metricsAddress; "
        "off by default)",
    )
    s.add_argument("--exist-ok", action="store_true", help="succeed if the node already exists")
    s.add_argument(
        "--technician",
        action="append",
        metavar="NAME=PINHASH",
        help="a technician who may act at the console (hash from `technician hash`; repeatable)",
    )
    cli_fleet.add_init_arguments(s)
    s.set_defaults(func=cmd_init)

    s = sub.add_parser("run", help="run the node in the foreground")
    s.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("apply", help="validate and record workload specs from a YAML file")
    s.add_argument("-f", "--filename", required=True, help="YAML file, or - for stdin")
    s.add_argument("--dry-run", action="store_true", help="validate only; needs no running node")
    add_as_option(s)
    s.set_defaults(func=cmd_apply)

    s = sub.add_parser(
        "lock",
        help="fleet policy: fields of a workload that site and node overrides may not change",
    )
    s.add_argument("workload")
    s.add_argument("fields", nargs="+", metavar="FIELD", help="e.g. image, env, env.MODE, or '*'")
    s.add_argument("--unlock", action="store_true", help="remove these fields from the lock")
    add_as_option(s)
    s.set_defaults(func=cmd_lock)

    s = sub.add_parser("delete", help="delete a workload")
    s.add_argument("kind", choices=["workload", "workloads"])
    s.add_argument("name")
    add_as_option(s)
    s.set_defaults(func=cmd_delete)

    s = sub.add_parser(
        "get", help="list workloads (or nodes, sites) with desired and observed state"
    )
    s.add_argument("kind", choices=["workload", "workloads", "node", "nodes", "site", "sites"])
    s.add_argument("name", nargs="?")
    cli_fleetview.add_get_arguments(s)
    out(s, ("table", "json", "yaml", "wide"))
    s.set_defaults(func=cmd_get)

    s = sub.add_parser("describe", help="show one workload in detail")
    s.add_argument("kind", choices=["workload", "workloads"])
    s.add_argument("name")
    out(s)
    s.set_defaults(func=cmd_describe)

    s = sub.add_parser("peers", help="sync links and peers: up/down, bytes, last sync, lag")
    out(s)
    s.set_defaults(func=cmd_peers)

    s = sub.add_parser("status", help="show the node, its store and its Podman connection")
    out(s)
    s.set_defaults(func=cmd_status)

    s = sub.add_parser("logs", help="print a workload's logs (or, through a hub, a node's)")
    s.add_argument(
        "--node",
        help="at a hub: read the workload's logs on this node (operator-signed: --as DIR or "
        "$NODERUNTIME_AS; a sovereign site refuses; the node records the read)",
    )
    s.add_argument("name")
    s.add_argument("-f", "--follow", action="store_true")
    s.add_argument("--tail", type=int, default=None, help="only the last N lines")
    s.set_defaults(func=cmd_logs)

    for verb, method, helptext in (
        ("restart", "workloads.restart", "restart a workload's container now"),
        ("stop", "workloads.stop", "stop a workload on this node (a node override)"),
        ("start", "workloads.start", "start a stopped workload on this node again"),
    ):
        s = sub.add_parser(verb, help=helptext)
        s.add_argument("name")
        s.set_defaults(
            func=cmd_action(
                method, {"restart": "restarted", "stop": "stopped", "start": "started"}[verb]
            )
        )

    s = sub.add_parser("override", help="set or remove a node-local override")
    osub = s.add_subparsers(dest="override_cmd", required=True)
    o = osub.add_parser("set")
    o.add_argument("workload")
    o.add_argument("field", help="enabled, image, command, args, restartPolicy, env.NAME, ...")
    o.add_argument("value", help="YAML value, e.g. true, '\"text\"', '[a, b]'")
    o.add_argument(
        "--scope",
        choices=["node", "site"],
        default="node",
        help="node: this node only (default); site: every node of this site (it syncs)",
    )
    add_as_option(o)
    o = osub.add_parser("rm")
    o.add_argument("workload")
    o.add_argument("field")
    o.add_argument("--scope", choices=["node", "site"], default="node")
    add_as_option(o)
    s.set_defaults(func=cmd_override)

    s = sub.add_parser("record", help="remove a record a document holds (one set aside)")
    rsub = s.add_subparsers(dest="record_cmd", required=True)
    r = rsub.add_parser(
        "rm",
        help="delete DOC's record MAP/KEY (see `status`: store.quarantined); the node signs "
        "its own documents, --as signs as an operator",
    )
    r.add_argument("doc", help="fleet, site/SITE or node/NODE")
    r.add_argument("map", help="workloads, locks, overrides, status, info, ...")
    r.add_argument("key")
    add_as_option(r)
    s.set_defaults(func=cmd_record)

    s = sub.add_parser("events", help="recent events on this node (or, at a hub, the fleet's)")
    s.add_argument("--workload")
    s.add_argument(
        "--fleet",
        action="store_true",
        help="at a hub: transitions (crash, unhealthy, recovered, rollout) from every node",
    )
    s.add_argument("-f", "--follow", action="store_true", help="with --fleet: keep printing")
    s.add_argument("--limit", type=int, default=100)
    out(s)
    s.set_defaults(func=cmd_events)

    s = sub.add_parser("technician", help="manage technicians who may act at the console")
    tsub = s.add_subparsers(dest="tech_cmd", required=True)
    t = tsub.add_parser("add", help="add a technician (or --replace their PIN)")
    t.add_argument("name")
    t.add_argument("--replace", action="store_true")
    pin = t.add_mutually_exclusive_group()
    pin.add_argument("--pin-stdin", action="store_true", help="read the PIN from stdin")
    pin.add_argument("--pin-hash", help="a hash from `technician hash` instead of the PIN")
    t = tsub.add_parser("hash", help="print a PIN hash for a provisioning file (needs no node)")
    t.add_argument("--pin-stdin", action="store_true", help="read the PIN from stdin")
    t = tsub.add_parser("rm", help="remove a technician")
    t.add_argument("name")
    tsub.add_parser("list", help="list technicians")
    s.set_defaults(func=cmd_technician)

    s = sub.add_parser("history", help="recent signed changes: who changed what, when")
    s.add_argument("--limit", type=int, default=50)
    s.add_argument(
        "--all", action="store_true", help="include the node's own status writes (hidden)"
    )
    out(s)
    s.set_defaults(func=cmd_history)

    s = sub.add_parser("doctor", help="check the host and say what to fix")
    s.add_argument(
        "--fix", action="store_true", help="write the Podman settings this host needs, then check"
    )
    out(s, ("table", "json"))
    s.set_defaults(func=cmd_doctor)

    s = sub.add_parser("tui", help="the technician console (a terminal UI)")
    s.set_defaults(func=cmd_tui)

    cli_fleet.add_parsers(sub)
    cli_audit.add_parsers(sub)
    backup.add_parsers(sub)
    cli_store.add_parsers(sub)
    cli_rollout.add_parsers(sub, add_as_option)
    cli_offline.add_parsers(sub)
    cli_secret.add_parsers(sub, add_as_option)
    cli_policy.add_parsers(sub, add_as_option)
    cli_revoke.add_parsers(sub, add_as_option)
    cli_rekey.add_parsers(sub, add_as_option)

    s = sub.add_parser("version", help="print versions of noderuntime and what it bundles")
    s.set_defaults(func=cmd_version)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        return cmd_version(args)
    if not args.command:
        parser.print_usage(sys.stderr)
        print("noderuntime: error: a COMMAND is required", file=sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.func(args))
    except DaemonNotRunningError as exc:
        try:
            check_skipped_config(args)
        except NodeRuntimeError as config_exc:
            print(f"error: {config_exc}", file=sys.stderr)
            return EXIT_USAGE if config_exc.code in INVALID_INPUT_CODES else EXIT_ERROR
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NOT_RUNNING
    except NodeRuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE if exc.code in INVALID_INPUT_CODES else EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
