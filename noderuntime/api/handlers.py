"""Control API routes (version 1) over a running :class:`~noderuntime.node.daemon.Node`.

Read routes: node.status, workloads.list, workloads.get, workloads.logs (stream), events.list.
Write routes: workloads.apply, workloads.delete, workloads.restart, overrides.set,
overrides.remove, updates.submit.
Sync routes (read): sync.peers, nodes.list. Debug (read): state.export (every held document's
maps, for comparing replicas).

Operator-signed changes (``--as FLEETDIR``): ``workloads.apply``/``workloads.delete`` with
``prepare: true`` validate and return the update the change would make (made on a scratch copy
of the document, nothing stored); the CLI signs it with the operator's key and sends it to
``updates.submit``, which verifies it exactly like an update from a peer and ingests it.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import platform
import shutil
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, cast

from noderuntime import __version__, codec
from noderuntime.api.fleetview import DEFAULT_STALE_AFTER_S, FleetSources, build_fleet_routes
from noderuntime.api.records import record_routes
from noderuntime.api.rollouts import rollout_routes
from noderuntime.api.server import ACTOR_PARAM, Params, Route
from noderuntime.api.site import site_routes
from noderuntime.api.views import contest_view, shown_status, workload_view
from noderuntime.crdt import schema
from noderuntime.crdt.clocks import UpdateFormatError, parse_update
from noderuntime.crdt.hlc import Hlc
from noderuntime.crdt.records import Contest
from noderuntime.crdt.schema import LOCK_ALL, StatusRecord
from noderuntime.errors import (
    ApiError,
    ConflictError,
    NodeRuntimeError,
    NotFoundError,
)
from noderuntime.reconcile.desired import (
    ENABLED,
    DesiredWorkload,
    check_override,
    is_override_field,
)
from noderuntime.reconcile.loop import phase_counts
from noderuntime.rollout import commands as rollout_commands
from noderuntime.rollout import revisions
from noderuntime.runtime.base import ContainerState, ObservedContainer
from noderuntime.spec.models import canonical_dict, spec_hash
from noderuntime.spec.parse import parse_workloads

if TYPE_CHECKING:
    from noderuntime.node.daemon import Node

MAX_LOG_TAIL = 100_000
# Records set aside listed in `status` (all are counted in quarantined_total).
MAX_QUARANTINED_SHOWN = 100
# A container may print a line of any length; one line is one API message, and a message over
# the protocol's limit would break the stream again at every reconnect (the tail re-sends it).
MAX_LOG_LINE_CHARS = 64 * 1024


def clip_log_line(line: str, limit: int = MAX_LOG_LINE_CHARS) -> str:
    if len(line) <= limit:
        return line
    return f"{line[:limit]} [... {len(line) - limit} more characters cut by noderuntime]"


def _str_param(params: Params, key: str, *, required: bool = True) -> str:
    value = params.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise ApiError(f"parameter {key!r} must be a non-empty string", code="bad_request")
    return value


def build_routes(node: Node) -> dict[str, Route]:
    cpu_meter = CpuMeter()

    def parts() -> tuple[Any, Any]:
        assert node.state is not None and node.reconciler is not None
        return node.state, node.reconciler

    def shown(name: str) -> tuple[StatusRecord | None, str | None]:
        state, rec = parts()
        return shown_status(
            state.snapshot().node.status.get(name),
            rec.live_status.get(name),
            observed=rec.observed_once,
            write_error=rec.status_write_error or state.store_error,
        )

    async def nats_monitor(path: str) -> dict[str, Any] | None:
        if node.nats is None:
            return None
        try:
            found = await node.nats.monitor(path)
        except (NodeRuntimeError, OSError, ValueError):
            return None
        return found if isinstance(found, dict) else None

    def placement_view(name: str, dw: DesiredWorkload | None) -> dict[str, Any] | None:
        p = dw.workload.spec.placement if dw is not None else None
        if p is None:
            return None
        slots = node.site.slots_of(name) if node.site is not None else []
        return {
            "replicas": p.replicas,
            "slots": [{"slot": s.slot, "node": s.node, "since": s.since} for s in slots],
        }

    def views() -> list[dict[str, Any]]:
        state, rec = parts()
        snap = state.snapshot()
        desired = rec.desired
        out = []
        names = set(desired.workloads) if desired else set()
        invalid = dict(desired.invalid) if desired else {}
        for name in sorted(names | set(invalid)):
            status, problem = shown(name)
            out.append(
                workload_view(
                    name,
                    desired.workloads.get(name) if desired else None,
                    status,
                    invalid_reason=invalid.get(name),
                    stored_spec=snap.fleet.workloads.get(name),
                    now=time.time(),
                    store_problem=problem,
                )
            )
            placement = placement_view(name, desired.workloads.get(name) if desired else None)
            if placement is not None:
                out[-1]["placement"] = placement
        return out

    async def status(_: Params) -> dict[str, Any]:
        state, rec = parts()
        stats = await state.store_stats()
        snap = state.snapshot()
        svc = node.podman_service
        disk = shutil.disk_usage(node.paths.data_dir)
        desired = rec.desired
        hold = store_hold(node, rec)
        quarantined = state.quarantined()
        return {
            "node": {
                "id": node.config.node_id,
                "site": node.config.site,
                "role": node.config.role.value,
                "labels": dict(node.config.labels),
                "version": __version__,
                "hostname": platform.node(),
                "pid": os.getpid(),
                "started_at": node.started_at,
                "uptime_s": time.time() - node.started_at,
                "data_dir": str(node.paths.data_dir),
                "api_socket": str(node.paths.api_socket),
            },
            "store": {
                "path": stats.path,
                # Cheap signals only (no integrity check per call): the latest commit and
                # what could not be read at load.
                "healthy": state.store_error is None
                and rec.status_write_error is None
                and not state.load_problems
                and not hold,
                "error": state.store_error
                or rec.status_write_error
                or (hold["reason"] if hold else None)
                or (
                    f"{state.load_problems} unreadable update(s) or snapshot(s) skipped at load;"
                    " see the node's log"
                    if state.load_problems
                    else None
                ),
                "updates": stats.updates,
                "snapshots": stats.snapshots,
                "size_bytes": stats.size_bytes,
                "schema_version": stats.schema_version,
                "documents": state.doc_names,
                "writes_since_start": state.writes,
                "last_write_at": state.last_write_at,
                "load_problems": state.load_problems,
                "last_write_error": state.last_write_error,
                "hold": hold,
                # Records no reader can use, set aside so everything else goes on; an operator
                # removes them with `noderuntime record rm DOC MAP KEY`.
                "quarantined": [q.to_dict() for q in quarantined[:MAX_QUARANTINED_SHOWN]],
                "quarantined_total": len(quarantined),
            },
            "podman": {
                "socket": str(node.podman_socket),
                "connected": rec.runtime_error is None and rec.passes > 0,
                "error": rec.runtime_error,
                "connected_since": rec.runtime_ok_since,
                "supervised": svc is not None,
                "service_restarts": svc.restarts if svc is not None else None,
            },
            "reconciler": {
                "passes": rec.passes,
                "last_pass_at": rec.last_pass_at,
                "converged": rec.converged,
                "status_write_error": rec.status_write_error,
            },
            "workloads": {
                "desired": len(desired.workloads) if desired else 0,
                "invalid": len(desired.invalid) if desired else 0,
                "not_selected": sorted(desired.not_selected) if desired else [],
                "phases": phase_counts(
                    {n: r for n in {*snap.node.status, *rec.live_status} if (r := shown(n)[0])}
                ),
            },
            "sync": node.sync.status()
            if node.sync is not None
            else {"enabled": False, "problem": getattr(node, "sync_problem", None)},
            "host": {
                **host_metrics(cpu_meter),
                "disk_total_bytes": disk.total,
                "disk_free_bytes": disk.free,
            },
        }

    async def store_reset(params: Params) -> dict[str, Any]:
        _, rec = parts()
        if params.get("confirm") is not True:
            raise ApiError(
                "a reset takes the store as it is and removes every container it does not "
                "name; confirm it (`noderuntime reset --i-mean-it`)",
                code="bad_request",
            )
        assert node.store_guard is not None
        ended = await node.store_guard.release(f"reset by {_actor(params) or 'root'}")
        rec.trigger("store-reset")
        return {
            "result": "reset" if ended is not None else "not_held",
            "hold": ended.to_dict() if ended is not None else None,
        }

    async def store_resync(_: Params) -> dict[str, Any]:
        engine = node.sync
        if engine is None or engine.resync is None:
            raise ApiError(
                "this node does not sync (not enrolled, or sync is off: see `noderuntime "
                "status`), so no peer can give its documents back; restore a backup or "
                "`noderuntime reset --i-mean-it`",
                code="not_enrolled",
            )
        guard = node.store_guard
        if guard is None or guard.hold is None:
            return {
                "result": "not_held",
                "ended": guard.released if guard is not None else None,
                "resync": None,
            }
        await engine.anti_entropy()
        return {"result": "asked", "resync": engine.resync.view()}

    async def list_workloads(_: Params) -> list[dict[str, Any]]:
        return views()

    async def get_workload(params: Params) -> dict[str, Any]:
        name = _str_param(params, "name")
        _, rec = parts()
        for view in views():
            if view["name"] == name:
                view["events"] = [e.to_dict() for e in rec.events if e.workload == name][-50:]
                containers = [c for c in rec.observed if c.workload == name]
                view["containers"] = [_container_view(c) for c in containers]
                view["probes"] = node.health.recent_results(name) if node.health else []
                view["concurrent_writes"] = await concurrent_writes(name)
                return view
        raise NotFoundError(f"no workload {name!r} on this node; see `noderuntime get workloads`")

    async def contests_with_authors(doc: str) -> tuple[list[Contest], dict[int, str]]:
        state, _ = parts()
        contests: list[Contest] = []
        if state.holds(doc):
            contests = cast(list[Contest], state.read(doc, schema.contests))
        clients = {v.client for c in contests for v in (c.won, *c.lost)}
        return contests, await state.client_authors(doc, sorted(clients))

    async def concurrent_writes(name: str) -> list[dict[str, Any]]:
        """Writes of this workload's records that lost to a concurrent one, and to whom."""
        state, _ = parts()
        out: list[dict[str, Any]] = []
        for doc in (state.fleet_doc, state.site_doc, state.node_doc):
            contests, authors = await contests_with_authors(doc)
            for c in contests:
                if c.key == name or c.key.startswith(f"{name}/"):
                    out += contest_view(doc, c, authors)
        return out

    def check_fleet_write(params: Params) -> None:
        # An enrolled plain node's own signature is not valid on the fleet document: peers
        # would refuse it. Say so now instead of letting the change diverge.
        if params.get("prepare") or node.sync is None or node.config.role.value == "hub":
            return
        raise ApiError(
            "fleet changes on an enrolled node must be signed by an operator: "
            "run the command with --as FLEETDIR (or set NODERUNTIME_AS)",
            code="operator_signature_required",
        )

    def check_operator_override(params: Params, scope: str) -> bool:
        """True if an operator will sign this override (``prepare``); refuse it on a node doc."""
        if not params.get("prepare"):
            return False
        if scope != "site":
            # node/<id> is written by its node alone (the writer ACL): an operator's signature
            # there would be refused by every peer.
            raise ApiError(
                "a node override is signed by the node itself; drop --as, or use "
                "--scope site to sign a site-wide override as the operator",
                code="bad_request",
            )
        return True

    def prepared(doc: str, mutate: Any, summary: str) -> dict[str, Any]:
        state, _ = parts()
        data, meta = state.prepare_change(doc, mutate, summary)
        return {
            "doc": doc,
            "data": base64.b64encode(data).decode() if data is not None else None,
            "meta": meta,
        }

    async def apply(params: Params) -> Any:
        state, _ = parts()
        text = _str_param(params, "yaml")
        source = params.get("source") if isinstance(params.get("source"), str) else None
        workloads = parse_workloads(text, source)
        current = state.snapshot().fleet.workloads
        results: list[dict[str, str]] = []
        changed = []
        hashes: dict[str, str] = {}
        for w in workloads:
            canon = canonical_dict(w)
            name = w.metadata.name
            old = current.get(name)
            if old == canon:
                results.append({"name": name, "result": "unchanged"})
                continue
            if rollout_commands.active(state.snapshot().fleet, name) is not None:
                raise ConflictError(
                    f"a rollout of {name!r} is in progress: abort it (`noderuntime rollout "
                    f"abort {name}`) or wait for it before applying a new spec"
                )
            changed.append((name, canon))
            hashes[name] = spec_hash(w)
            results.append({"name": name, "result": "created" if old is None else "configured"})

        # Every change is a revision (noderuntime/rollout/revisions.py): history and undo.
        fleet, now = state.snapshot().fleet, time.time()
        who = params.get("author") or _actor(params) or f"node:{node.config.node_id}"
        revs = [
            revisions.revision_record(
                name,
                revisions.latest_number(fleet, name) + 1,
                canon,
                hashes[name],
                author=str(who),
                at=now,
                note="apply",
            )
            for name, canon in changed
        ]

        def mutate(doc: Any) -> Hlc:
            hlc = schema.write_hlc(doc, {schema.WORKLOADS: [n for n, _ in changed]})
            for (name, canon), rev in zip(changed, revs, strict=True):
                schema.put_workload(doc, name, canon, hlc)
                key = revisions.revision_key(name, int(rev["revision"]))
                schema.put_entry(doc, schema.REVISIONS, key, rev)
            return hlc

        summary = "apply " + ", ".join(f"{n}" for n, _ in changed)
        if params.get("prepare"):
            return {"results": results, "prepared": prepared(state.fleet_doc, mutate, summary)}
        if changed:
            check_fleet_write(params)
            await state.write(state.fleet_doc, mutate, summary=summary, on_behalf=_actor(params))
        return results

    async def lock(params: Params) -> dict[str, Any]:
        """Fleet policy: the fields of a workload no site or node override may change."""
        state, _ = parts()
        name = _str_param(params, "workload")
        fields = params.get("fields")
        if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
            raise ApiError("fields must be a list of field paths", code="bad_request")
        bad = [f for f in fields if f != LOCK_ALL and f not in ("env", "resources")]
        bad = [f for f in bad if not is_override_field(f)]
        if bad:
            raise ApiError(
                f"cannot lock {', '.join(map(repr, bad))}: lockable are {LOCK_ALL!r} (everything), "
                "enabled, image, command, args, restartPolicy, env, env.<NAME>, resources, "
                "resources.cpus, resources.memory",
                code="bad_request",
            )
        snap = state.snapshot()
        if name not in snap.fleet.workloads:
            raise NotFoundError(f"no workload {name!r}; see `noderuntime get workloads`")
        current = set(snap.fleet.locks.get(name, frozenset()))
        new = current | set(fields) if not params.get("unlock") else current - set(fields)
        summary = f"lock {name}: {', '.join(sorted(new)) or 'nothing'}"

        def mutate(doc: Any) -> Hlc:
            return schema.set_lock(doc, name, sorted(new))

        out: dict[str, Any] = {"workload": name, "locked": sorted(new)}
        if params.get("prepare"):
            out["prepared"] = prepared(state.fleet_doc, mutate, summary)
            return out
        if new != current:
            check_fleet_write(params)
            await state.write(state.fleet_doc, mutate, summary=summary, on_behalf=_actor(params))
        return out

    async def delete(params: Params) -> dict[str, Any]:
        state, _ = parts()
        name = _str_param(params, "name")
        if name not in state.snapshot().fleet.workloads:
            raise NotFoundError(f"no workload {name!r}; see `noderuntime get workloads`")

        # A rollout in progress ends with the workload: its candidate must not outlive it, and
        # completing must not write it back.
        fleet = state.snapshot().fleet
        ending = (
            rollout_commands.abort(fleet, name, by="", now=time.time(), reason="deleted")
            if rollout_commands.active(fleet, name) is not None
            else []
        )

        def mutate(doc: Any) -> Hlc:
            hlc = schema.write_hlc(doc, {schema.WORKLOADS: [name]})
            schema.delete_workload(doc, name, hlc)
            for map_name, key, value in ending:
                schema.put_entry(doc, map_name, key, value)
            return hlc

        if params.get("prepare"):
            out: dict[str, Any] = {"name": name, "result": "deleted"}
            out["prepared"] = prepared(state.fleet_doc, mutate, f"delete {name}")
            return out
        check_fleet_write(params)
        await state.write(
            state.fleet_doc, mutate, summary=f"delete {name}", on_behalf=_actor(params)
        )
        return {"name": name, "result": "deleted"}

    def kept_container(name: str) -> ObservedContainer:
        _, rec = parts()
        desired = rec.desired
        if desired is None or name not in desired.workloads:
            raise NotFoundError(
                f"no workload {name!r} on this node; see `noderuntime get workloads`"
            )
        want = desired.workloads[name].spec_hash
        cands: list[ObservedContainer] = [c for c in rec.observed if c.workload == name]
        cands.sort(key=lambda c: (c.spec_hash != want, c.state is not ContainerState.RUNNING))
        if not cands:
            raise NotFoundError(
                f"workload {name!r} has no container yet; see `noderuntime get workloads`"
            )
        return cands[0]

    async def logs(params: Params) -> AsyncIterator[str]:
        name = _str_param(params, "name")
        follow = bool(params.get("follow", False))
        tail = params.get("tail")
        if tail is not None and (not isinstance(tail, int) or tail < 0 or tail > MAX_LOG_TAIL):
            raise ApiError(
                f"tail must be an integer between 0 and {MAX_LOG_TAIL}", code="bad_request"
            )
        container = kept_container(name)
        assert node.runtime is not None
        async for line in node.runtime.logs(container.id, follow=follow, tail=tail):
            yield clip_log_line(line)

    async def restart(params: Params) -> dict[str, str]:
        name = _str_param(params, "name")
        container = kept_container(name)
        assert node.runtime is not None and node.reconciler is not None
        await node.reconciler.restart_container(name, container.id)
        node.reconciler.set_health(name, None)
        node.reconciler.note(name, "restarted", f"restarted by {_actor(params) or 'root'}")
        return {"name": name, "result": "restarted", "container_id": container.id}

    def override_scope(params: Params) -> tuple[str, str]:
        """Which document an override goes to: this node's (default) or its whole site's."""
        state, _ = parts()
        scope = params.get("scope", "node")
        if scope == "node":
            return scope, state.node_doc
        if scope == "site":
            return scope, state.site_doc
        raise ApiError(f"scope must be 'node' or 'site', not {scope!r}", code="bad_request")

    async def set_override(params: Params) -> dict[str, Any]:
        state, _ = parts()
        workload = _str_param(params, "workload")
        field_path = _str_param(params, "field")
        if "value" not in params:
            raise ApiError("parameter 'value' is required", code="bad_request")
        value = params["value"]
        snap = state.snapshot()
        if workload not in snap.fleet.workloads:
            raise NotFoundError(f"no workload {workload!r} to override")
        check_override(snap, workload, field_path, value)
        scope, doc_name = override_scope(params)
        summary = f"override {workload} {field_path}={json.dumps(value)} ({scope})"
        out: dict[str, Any] = {
            "workload": workload,
            "field": field_path,
            "value": value,
            "scope": scope,
        }

        def mutate(doc: Any) -> Hlc:
            return schema.set_override(doc, workload, field_path, value)

        if check_operator_override(params, scope):
            return out | {"prepared": prepared(doc_name, mutate, summary)}
        await state.write(doc_name, mutate, summary=summary, on_behalf=_actor(params))
        return out

    async def remove_override(params: Params) -> dict[str, Any]:
        state, _ = parts()
        workload = _str_param(params, "workload")
        field_path = _str_param(params, "field")
        check_override(state.snapshot(), workload, field_path, None, removing=True)
        removed = False

        def mutate(doc: Any) -> Hlc:
            nonlocal removed
            key = schema.override_key(workload, field_path)
            hlc = schema.write_hlc(doc, {schema.OVERRIDES: [key]})
            removed = schema.remove_override(doc, workload, field_path, hlc)
            return hlc

        scope, doc_name = override_scope(params)
        summary = f"remove override {workload} {field_path} ({scope})"
        if check_operator_override(params, scope):
            out = prepared(doc_name, mutate, summary)
            if not removed:
                raise NotFoundError(
                    f"no {scope} override of {field_path!r} on workload {workload!r}"
                )
            return {"workload": workload, "field": field_path, "scope": scope, "prepared": out}
        await state.write(doc_name, mutate, summary=summary, on_behalf=_actor(params))
        if not removed:
            raise NotFoundError(f"no {scope} override of {field_path!r} on workload {workload!r}")
        return {"workload": workload, "field": field_path, "removed": True, "scope": scope}

    async def events(params: Params) -> list[dict[str, Any]]:
        _, rec = parts()
        workload = _str_param(params, "workload", required=False)
        out = [e.to_dict() for e in rec.events if not workload or e.workload == workload]
        limit = params.get("limit", 200)
        return out[-int(limit) :] if isinstance(limit, int) and limit > 0 else out

    async def history(params: Params) -> list[dict[str, Any]]:
        state, _ = parts()
        limit = params.get("limit", 100)
        if not isinstance(limit, int) or not 0 < limit <= 10_000:
            raise ApiError("limit must be an integer between 1 and 10000", code="bad_request")
        out = []
        lost: dict[tuple[str, int, str], dict[str, Any]] = {}  # (doc, client, hlc) -> view
        for doc in sorted({u.doc for u in await state.history(limit)}):
            contests, authors = await contests_with_authors(doc)
            for c in contests:
                for view, loser in zip(contest_view(doc, c, authors), c.lost, strict=True):
                    lost[(doc, loser.client, loser.hlc.encode())] = view
        for u in await state.history(limit):
            try:
                meta = codec.loads(u.meta)
            except codec.DecodeError:
                meta = {}
            if not isinstance(meta, dict):
                meta = {}
            out.append(
                {
                    "seq": u.seq,
                    "doc": u.doc,
                    "author": u.author,
                    "on_behalf": meta.get("onBehalf"),
                    "summary": meta.get("summary", ""),
                    "ts": u.ts,
                    "size_bytes": len(u.data),
                    "hlc": meta.get("hlc"),
                    "lost_to": _lost_to(lost, u.doc, u.data, meta.get("hlc")),
                }
            )
        return out

    async def start_stop(params: Params, enabled: bool) -> dict[str, Any]:
        return await set_override(
            {
                "workload": params.get("name"),
                "field": ENABLED,
                "value": enabled,
                ACTOR_PARAM: params.get(ACTOR_PARAM),
            }
        )

    async def start(params: Params) -> dict[str, Any]:
        state, _ = parts()
        name = _str_param(params, "name")
        try:
            return await remove_override(
                {"workload": name, "field": ENABLED, ACTOR_PARAM: params.get(ACTOR_PARAM)}
            )
        except NotFoundError:
            if name not in state.snapshot().fleet.workloads:
                raise
            return {"workload": name, "field": ENABLED, "removed": False}

    async def stop(params: Params) -> dict[str, Any]:
        return await start_stop(params, False)

    def b64_param(params: Params, key: str) -> bytes:
        try:
            return base64.b64decode(_str_param(params, key), validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(f"parameter {key!r} must be base64", code="bad_request") from None

    async def submit(params: Params) -> dict[str, Any]:
        from noderuntime.crdt.store import NewUpdate
        from noderuntime.sync.verify import submit_signed

        state, _ = parts()
        trust = node.fleet
        if trust is None:
            raise ApiError(
                "this node is not enrolled in a fleet, so it cannot check an operator's "
                "signature; enrol it (`noderuntime enroll`) first",
                code="not_enrolled",
            )
        credential = params.get("credential")
        if isinstance(credential, str) and credential:
            trust.add(credential)  # verified against the fleet root; raises if not valid
        update = NewUpdate(
            doc=_str_param(params, "doc"),
            data=b64_param(params, "data"),
            author=_str_param(params, "author"),
            signature=b64_param(params, "signature"),
            ts=time.time(),
            meta=_str_param(params, "meta"),
        )
        result = await submit_signed(state, trust, update, hub=node.config.role.value == "hub")
        return {"doc": update.doc, "author": update.author, "result": result.value}

    async def sync_peers(_: Params) -> dict[str, Any]:
        links: list[dict[str, Any]] = []
        nats = getattr(node, "nats", None)
        if nats is not None and hasattr(nats, "leaf_links"):
            try:
                links = [link.to_dict() for link in await nats.leaf_links()]
            except Exception as exc:
                links = [{"error": str(exc)}]
        engine = node.sync
        return {
            "enabled": engine is not None,
            "peers": engine.peer_views() if engine is not None else [],
            "links": links,
            "sync": engine.status() if engine is not None else {"enabled": False},
        }

    async def nodes_list(_: Params) -> list[dict[str, Any]]:
        state, rec = parts()
        snap = state.snapshot()
        me: dict[str, Any] = {
            "node": node.config.node_id,
            "site": node.config.site,
            "role": node.config.role.value,
            "self": True,
            "up": True,
            "last_seen": time.time(),
            "health": "ok" if rec.runtime_error is None else "degraded",
            "workloads": phase_counts(snap.node.status),
        }
        out = {me["node"]: me}
        engine = node.sync
        if engine is not None:
            for p in engine.peer_views():
                hb = engine.peers[p["node"]].heartbeat
                out[p["node"]] = {
                    "node": p["node"],
                    "site": p["site"],
                    "role": p["role"],
                    "self": False,
                    "up": p["up"],
                    "last_seen": p["last_heard"],
                    "health": hb.get("health"),
                    "workloads": hb.get("workloads", {}),
                }
        # A hub also knows nodes from their documents (even if never heard from directly).
        for name in state.doc_names:
            kind, _, ident = name.partition("/")
            if kind != "node" or ident in out:
                continue
            view = state.read(name, schema.read_node)
            info = dict(view.info)
            out[ident] = {
                "node": ident,
                "site": info.get("site"),
                "role": info.get("role"),
                "self": False,
                "up": False,
                "last_seen": None,
                "health": None,
                "workloads": phase_counts(view.status),
            }
        return [out[k] for k in sorted(out)]

    async def export(params: Params) -> dict[str, Any]:
        state, _ = parts()
        wanted = params.get("docs")
        if wanted is not None and not (
            isinstance(wanted, list) and all(isinstance(d, str) for d in wanted)
        ):
            raise ApiError("parameter 'docs' must be a list of document names", code="bad_request")
        names = [n for n in state.doc_names if wanted is None or n in wanted]
        return {n: state.read(n, schema.export_doc) for n in sorted(names)}

    def own_status() -> dict[str, StatusRecord]:
        state, rec = parts()
        names = set(state.snapshot().node.status) | set(rec.live_status)
        return {n: st for n in sorted(names) if (st := shown(n)[0]) is not None}

    fleet_routes = build_fleet_routes(
        lambda: FleetSources(
            node_id=node.config.node_id,
            site=node.config.site,
            role=node.config.role.value,
            labels=dict(node.config.labels),
            state=parts()[0],
            peers=lambda: node.sync.peer_views() if node.sync is not None else [],
            heartbeat=lambda ident: (
                node.sync.peers[ident].heartbeat
                if node.sync is not None and ident in node.sync.peers
                else {}
            ),
            stale_after_s=lambda: (
                node.sync.table.timeout_s if node.sync is not None else DEFAULT_STALE_AFTER_S
            ),
            own_status=own_status,
            events=lambda: node.sync.fleet_events if node.sync is not None else None,
            remote_logs=node.sync.remote_logs.request if node.sync is not None else None,
        )
    )

    return fleet_routes | {
        "node.status": Route(status, doc="node, store, Podman and workload summary"),
        "store.reset": Route(
            store_reset, write=True, doc="end a store hold: take the store as it is (destructive)"
        ),
        "store.resync": Route(
            store_resync, write=True, doc="ask peers for this node's documents now (a held node)"
        ),
        "state.export": Route(export, doc="debug: the held documents' maps (read-only)"),
        "sync.peers": Route(sync_peers, doc="sync links and peers: up/down, bytes, lag"),
        "nodes.list": Route(nodes_list, doc="nodes known here: site, last seen, health"),
        "updates.submit": Route(
            submit, write=True, doc="ingest an operator-signed update (verified like a peer's)"
        ),
        "workloads.list": Route(
            list_workloads, doc="every workload with desired and observed state"
        ),
        "workloads.get": Route(get_workload, doc="one workload, with provenance and events"),
        "workloads.logs": Route(stream=logs, doc="log lines of a workload's container"),
        "events.list": Route(events, doc="recent events, optionally of one workload"),
        "history.list": Route(history, doc="recent signed changes: who changed what, when"),
        "workloads.apply": Route(apply, write=True, doc="validate and record workload specs"),
        "policy.lock": Route(lock, write=True, doc="lock or unlock workload fields (fleet policy)"),
        "workloads.delete": Route(delete, write=True, doc="delete a workload everywhere"),
        "workloads.restart": Route(restart, write=True, doc="restart a workload's container"),
        "workloads.stop": Route(stop, write=True, doc="disable a workload on this node"),
        "workloads.start": Route(start, write=True, doc="re-enable a workload on this node"),
        "overrides.set": Route(set_override, write=True, doc="set a node override"),
        "overrides.remove": Route(remove_override, write=True, doc="remove a node override"),
        **site_routes(lambda: node.site, nats_monitor),
        **record_routes(
            lambda: parts()[0],
            is_hub=node.config.role.value == "hub",
            enrolled=lambda: node.sync is not None,
        ),
        **rollout_routes(
            lambda: parts()[0],
            node_id=node.config.node_id,
            is_hub=node.config.role.value == "hub",
            enrolled=lambda: node.sync is not None,
        ),
    }


def store_hold(node: Node, rec: Any) -> dict[str, Any] | None:
    """The store hold for status: why, since when, and what it spares (None: not held)."""
    guard = node.store_guard
    view = guard.view() if guard is not None else None
    if view is None:
        return None
    plan = rec.last_plan
    engine = node.sync
    return {
        **view,
        "containers": len(rec.observed),
        "workloads": list(plan.held) if plan is not None else [],
        "resync": engine.resync.view() if engine is not None and engine.resync else None,
    }


def _lost_to(
    lost: dict[tuple[str, int, str], dict[str, Any]], doc: str, data: bytes, hlc: object
) -> dict[str, Any] | None:
    """The write this update's record version lost to, if it lost a concurrent contest."""
    if not isinstance(hlc, str) or not lost:
        return None
    try:
        clients = parse_update(data).ranges
    except UpdateFormatError:
        return None
    for client in clients:
        view = lost.get((doc, client, hlc))
        if view is not None:
            return {"record": view["record"], **view["won"]}
    return None


def _actor(params: Params) -> str | None:
    actor = params.get(ACTOR_PARAM)
    return actor if isinstance(actor, str) else None


def read_cpu_times(path: str = "/proc/stat") -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs since boot, or None where /proc/stat is unreadable."""
    try:
        with open(path) as fh:
            fields = fh.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    values = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


class CpuMeter:
    """Host CPU use between two status calls (what a technician means by "CPU"; the load
    average counts waiting processes too)."""

    def __init__(self, read: Callable[[], tuple[int, int] | None] = read_cpu_times) -> None:
        self._read = read
        self._last = read()

    def percent(self) -> float | None:
        now = self._read()
        last, self._last = self._last, now
        if now is None or last is None or now[1] <= last[1]:
            return None
        return round(100.0 * (now[0] - last[0]) / (now[1] - last[1]), 1)


def host_metrics(cpu: CpuMeter | None = None) -> dict[str, Any]:
    """CPU, memory and load of the host, from /proc (no extra dependency)."""
    mem: dict[str, int] = {}
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key in ("MemTotal", "MemAvailable"):
                    mem[key] = int(rest.split()[0]) * 1024
    except (OSError, ValueError):
        pass
    return {
        "cpus": os.cpu_count() or 1,
        "cpu_percent": cpu.percent() if cpu is not None else None,
        "load_avg": list(os.getloadavg()),
        "mem_total_bytes": mem.get("MemTotal"),
        "mem_available_bytes": mem.get("MemAvailable"),
    }


def _container_view(c: ObservedContainer) -> dict[str, Any]:
    return {
        "id": c.id,
        "name": c.name,
        "state": c.state.value,
        "spec_hash": c.spec_hash,
        "image": c.image,
        "exit_code": c.exit_code,
        "started_at": c.started_at,
        "finished_at": c.finished_at,
        "ip_address": c.ip_address,
    }
