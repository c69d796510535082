"""Pure view-model logic for the technician TUI: formatting, rows, filters. No Textual, no I/O.

Everything here takes the plain JSON the control API returns (see ``noderuntime/api/views.py``
and ``noderuntime/api/routes/``) and a ``now`` timestamp, so it is tested without a node, a
terminal or a clock.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tui.problems import (
    HEALTHY_RANK,
    reason_line,
    shown_phase,
    view_severity,
    workload_reason,
)

# Phases as the node reports them (noderuntime.reconcile.status.Phase values), in display order.
PHASES: tuple[str, ...] = (
    "Running",
    "Starting",
    "Standby",
    "Pending",
    "Unhealthy",
    "Failed",
    "Stopped",
    "Unknown",
)
# Rich style per phase: plain ANSI colour names, so a 16-colour console shows them; the phase is
# always printed as text too, colour is only a hint.
PHASE_STYLES: Mapping[str, str] = {
    "Running": "green",
    # Severity reads on a 16-colour console too: red failed, yellow waiting or unhealthy.
    "Starting": "yellow",
    # Another node of the site runs the instance; this one is ready to take over.
    "Standby": "blue",
    "Pending": "yellow",
    "Unhealthy": "bold yellow",
    "Failed": "bold red",
    "Stopping": "yellow",
    "Stopped": "bright_black",
    "Unknown": "magenta",
}
HEALTH_STYLES: Mapping[str, str] = {"healthy": "green", "unhealthy": "bold yellow"}

SOURCE_FLEET = "fleet"
# In a field the node lists (``overrides.fields``), stands for any name: env.<NAME>.
ANY_NAME = "<NAME>"


# --- formatting -----------------------------------------------------------------------------


def fmt_duration(seconds: float | None) -> str:
    """Compact duration like k9s ages: 42s, 5m, 3h12m, 4d2h."""
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s:02d}s" if m < 10 else f"{m}m"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h}h{m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d{h}h"


def fmt_age(ts: float | None, now: float) -> str:
    return "-" if ts is None else fmt_duration(now - ts)


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - loop always returns


def fmt_bytes_pair(used: float | None, total: float | None) -> str:
    """``2.5/4.0 GiB``: both in the unit of the total, to fit a narrow panel."""
    if used is None or total is None:
        return f"{fmt_bytes(used)} / {fmt_bytes(total)}"
    value, unit = float(total), "B"
    scaled_used = float(used)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            break
        value /= 1024
        scaled_used /= 1024
    if unit == "B":
        return f"{scaled_used:.0f}/{value:.0f} B"
    return f"{scaled_used:.1f}/{value:.1f} {unit}"


def fmt_clock(ts: float | None) -> str:
    """Wall-clock time of day in UTC (the appliance's clock may be the only one around)."""
    if ts is None:
        return "-"
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def fmt_percent(part: float | None, whole: float | None) -> str:
    if part is None or not whole:
        return "-"
    return f"{100.0 * part / whole:.0f}%"


def short_hash(h: str | None) -> str:
    return h[:8] if h else "-"


def bar(fraction: float | None, width: int = 10) -> str:
    """A text gauge that needs no colour: [#####-----]."""
    if fraction is None:
        return "[" + "?" * width + "]"
    f = min(1.0, max(0.0, fraction))
    filled = round(f * width)
    return "[" + "#" * filled + "-" * (width - filled) + "]"


# --- overview -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gauge:
    label: str
    used: float | None
    total: float | None
    text: str

    @property
    def fraction(self) -> float | None:
        if self.used is None or not self.total:
            return None
        return self.used / self.total


def host_gauges(host: Mapping[str, Any]) -> list[Gauge]:
    cpus = host.get("cpus") or 1
    load = host.get("load_avg") or [None]
    load1 = load[0] if load else None
    mem_total = host.get("mem_total_bytes")
    mem_avail = host.get("mem_available_bytes")
    mem_used = mem_total - mem_avail if mem_total is not None and mem_avail is not None else None
    disk_total = host.get("disk_total_bytes")
    disk_free = host.get("disk_free_bytes")
    disk_used = disk_total - disk_free if disk_total is not None and disk_free is not None else None
    load_text = f"load {load1:.2f}/{cpus} cpu" if isinstance(load1, int | float) else f"{cpus} cpu"
    cpu_pct = host.get("cpu_percent")
    if isinstance(cpu_pct, int | float):
        # Utilisation fills the gauge; the load average stays beside it as text.
        cpu_gauge = Gauge("CPU", float(cpu_pct), 100.0, f"{cpu_pct:.0f}% · {load_text}")
    else:
        cpu_gauge = Gauge("CPU", load1, float(cpus), load_text)
    return [
        cpu_gauge,
        Gauge("Memory", mem_used, mem_total, fmt_bytes_pair(mem_used, mem_total)),
        Gauge("Disk", disk_used, disk_total, fmt_bytes_pair(disk_used, disk_total)),
    ]


def phase_summary(phases: Mapping[str, int]) -> list[tuple[str, int]]:
    """Phase counts in display order, known phases first, zeros dropped (unknown ones kept)."""
    known = [(p, int(phases.get(p, 0))) for p in PHASES if phases.get(p)]
    extra = sorted((p, int(n)) for p, n in phases.items() if p not in PHASES and n)
    return known + extra


def podman_state(podman: Mapping[str, Any]) -> tuple[str, bool]:
    """(text, ok) for the Podman line of the overview."""
    if podman.get("connected"):
        return "connected", True
    err = podman.get("error")
    return (f"DOWN: {err}" if err else "not connected yet"), False


def _load_problems(store: Mapping[str, Any]) -> int:
    # A count from the node (older nodes and the fake send a list).
    problems = store.get("load_problems") or 0
    return len(problems) if isinstance(problems, list | tuple) else int(problems)


def store_state(store: Mapping[str, Any]) -> tuple[str, bool]:
    ok = bool(store.get("healthy"))
    problems = _load_problems(store)
    state = "HELD" if store.get("hold") else "ok" if ok else "UNHEALTHY"
    text = f"{state}, {fmt_bytes(store.get('size_bytes'))}, {store.get('updates', 0)} updates"
    if problems:
        text += f", {problems} load problem(s)"
        ok = False
    return text, ok


def store_problem(store: Mapping[str, Any]) -> str | None:
    """Why the store is not healthy, as the node says (None while it is healthy)."""
    if store_state(store)[1]:
        return None
    hold = store.get("hold")
    if isinstance(hold, Mapping):
        # The store lost what it had: the node stops and removes nothing until someone decides.
        spared = ", ".join(hold.get("workloads") or []) or "none so far"
        return (
            f"{hold.get('reason')}. Nothing is stopped or removed (spared: {spared}). "
            f"Decide: {hold.get('decide')}"
        )
    if store.get("error"):
        return str(store["error"])
    problems = _load_problems(store)
    if problems:
        return f"{problems} unreadable update(s) skipped at load; see the node's log"
    return "the node reports it unhealthy" if store else "not reported by the node"


def sync_summary(sync: Mapping[str, Any] | None) -> tuple[str, bool]:
    if not sync or not sync.get("enabled"):
        return "not configured on this node", True
    state = "connected" if sync.get("connected") else "OFFLINE (changes kept, sync on reconnect)"
    rejected = int(sync.get("rejected_total") or 0)
    text = f"{state}; peers {sync.get('peers_up', 0)}/{sync.get('peers_known', 0)} up" + (
        f"; {rejected} rejected" if rejected else ""
    )
    return text, bool(sync.get("connected"))


def site_summary(site: Mapping[str, Any] | None) -> tuple[str, bool] | None:
    """The overview's Site line from ``site.status``; None: the node has no site quorum to show.

    Without quorum nobody at the site can take or renew a lease: running singletons stop at
    their fence and none starts, so the technician must see it at once.
    """
    if not site:
        return None
    if site.get("mode") == "alone":
        return "alone in its site: placed workloads run here", True
    members = site.get("members") or {}
    up = sum(1 for m in members.values() if isinstance(m, Mapping) and m.get("up"))
    known = f"; members {up}/{len(members)} up" if members else ""
    kv = site.get("kv") or {}
    kv_text = "" if kv.get("healthy", True) else f"; leases: {kv.get('problem') or 'unavailable'}"
    quorum = site.get("quorum")
    if quorum is False:
        return f"NO QUORUM: placed workloads stand by{known}{kv_text}", False
    if quorum is None:
        return f"quorum unknown{known}{kv_text}", False
    leader = site.get("meta_leader") or "?"
    return f"quorum (leader {leader}){known}{kv_text}", not kv_text


def placement_text(placement: Mapping[str, Any] | None, now: float) -> str | None:
    """Who holds each slot of a placed workload, for the detail view; None: not placed."""
    if not placement:
        return None
    slots = []
    for s in placement.get("slots") or []:
        if not isinstance(s, Mapping):
            continue
        node = s.get("node") or "nobody yet"
        since = s.get("since")
        slots.append(
            f"slot {s.get('slot', '?')} on {node}"
            + (f" for {fmt_age(since, now)}" if isinstance(since, int | float) else "")
        )
    replicas = placement.get("replicas", "?")
    return f"placement: {replicas} per site; " + ("; ".join(slots) or "no slot held yet")


# --- workloads ------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkloadRow:
    name: str
    want: str
    phase: str
    health: str
    restarts: str
    since: str
    spec: str
    image: str
    message: str = ""
    rank: int = HEALTHY_RANK

    def cells(self) -> tuple[str, ...]:
        return (
            self.name,
            self.want,
            self.phase,
            self.health,
            self.restarts,
            self.since,
            self.spec,
            self.image,
            self.message,
        )

    def fields(self) -> dict[str, str]:
        """Cells by lower-case column name, for ``field=value`` filter words."""
        return dict(zip((c.lower() for c in WORKLOAD_COLUMNS), self.cells(), strict=True))


WORKLOAD_COLUMNS: tuple[str, ...] = (
    "NAME",
    "WANT",
    "PHASE",
    "HEALTH",
    "RESTARTS",
    "SINCE",
    "SPEC",
    "IMAGE",
    "MESSAGE",
)
# Sort orders of the workloads list: problems first (the default), or by name.
SORT_PROBLEMS = "problems"
SORT_NAME = "name"


def spec_state(view: Mapping[str, Any]) -> str:
    """Does what runs match what is desired? current / outdated / - (nothing observed)."""
    want, have = view.get("spec_hash"), view.get("observed_spec_hash")
    if not want or not have:
        return "-"
    return "current" if want == have else "outdated"


def workload_row(view: Mapping[str, Any], now: float) -> WorkloadRow:
    return WorkloadRow(
        name=str(view.get("name", "?")),
        want="run" if view.get("enabled", True) else "stop",
        phase=shown_phase(view),
        health=str(view.get("health") or "-"),
        restarts=str(view.get("restarts") or 0),
        since=fmt_age(view.get("since"), now),
        spec=spec_state(view),
        image=str(view.get("image") or "-"),
        message=workload_reason(view),
        rank=view_severity(view),
    )


def matches_filter(text: str, query: str, fields: Mapping[str, str] | None = None) -> bool:
    """Every whitespace-separated word of ``query`` occurs in ``text`` (case-insensitive).

    ``text`` is what the row shows. ``field=value`` words match the start of one field's value
    (``phase=f``); a leading ``!`` negates a word.
    """
    hay = text.lower()
    for word in query.lower().split():
        negate = word.startswith("!")
        if negate:
            word = word[1:]
        if not word:
            continue
        key, eq, value = word.partition("=")
        if eq and fields is not None and key in fields:
            found = fields[key].lower().startswith(value)
        else:
            found = word in hay
        if found == negate:
            return False
    return True


def row_text(row: WorkloadRow) -> str:
    """What the row shows, for the filter: visible columns only."""
    return "  ".join(row.cells())


def filter_rows(rows: Iterable[WorkloadRow], query: str) -> list[WorkloadRow]:
    q = query.strip()
    return [r for r in rows if not q or matches_filter(row_text(r), q, r.fields())]


def workload_rows(
    views: Iterable[Mapping[str, Any]], now: float, query: str = "", sort: str = SORT_PROBLEMS
) -> list[WorkloadRow]:
    rows = [workload_row(v, now) for v in views]
    if sort == SORT_NAME:
        rows.sort(key=lambda r: r.name)
    else:
        rows.sort(key=lambda r: (r.rank, r.name))
    return filter_rows(rows, query)


def phase_counts(views: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for v in views:
        phase = str(v.get("phase") or "Pending")
        counts[phase] = counts.get(phase, 0) + 1
    return counts


# --- workload detail ------------------------------------------------------------------------


@dataclass(frozen=True)
class SpecField:
    path: str
    value: str
    source: str
    overridable: bool


@dataclass(frozen=True)
class OverrideFields:
    """The fields a node override may set, as the node lists them (``overrides.fields``)."""

    fields: tuple[str, ...]

    @classmethod
    def from_api(cls, answer: Any) -> OverrideFields:
        """Raises ValueError if ``answer`` is not ``{"fields": [str, ...]}``."""
        fields = answer.get("fields") if isinstance(answer, Mapping) else None
        if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
            raise ValueError(f"overrides.fields answered {answer!r}, not a list of fields")
        return cls(tuple(fields))

    @property
    def help(self) -> str:
        return ", ".join(self.fields)

    @property
    def prefixes(self) -> tuple[str, ...]:
        """``env.`` for ``env.<NAME>``: what a field of a named family starts with."""
        return tuple(f[: -len(ANY_NAME)] for f in self.fields if f.endswith(ANY_NAME))

    @property
    def suggestions(self) -> tuple[str, ...]:
        """For completion: the families' prefixes first (the most common overrides)."""
        return self.prefixes + tuple(f for f in self.fields if not f.endswith(ANY_NAME))

    def allows(self, path: str) -> bool:
        if path in self.fields and not path.endswith(ANY_NAME):
            return True
        return any(path.startswith(p) and len(path) > len(p) for p in self.prefixes)


def _fmt_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(", ", ": "))


def _flatten(prefix: str, value: Any, out: list[tuple[str, Any]]) -> None:
    # env and resources flatten to the override paths (env.NAME, resources.cpus); other
    # nested values print as compact JSON.
    if isinstance(value, Mapping) and prefix in ("env", "resources"):
        if not value:
            return
        for key in sorted(value):
            _flatten(f"{prefix}.{key}", value[key], out)
        return
    if value is None or value == [] or value == {}:
        return
    out.append((prefix, value))


def spec_fields(view: Mapping[str, Any], overridable: OverrideFields | None) -> list[SpecField]:
    """Effective spec of a workload as (field, value, where it came from) rows.

    ``overridable`` is what the node said may be overridden; None (not known yet): nothing.
    """
    spec_doc = view.get("spec") or {}
    spec = spec_doc.get("spec") if isinstance(spec_doc, Mapping) else None
    provenance: Mapping[str, str] = view.get("provenance") or {}
    flat: list[tuple[str, Any]] = [("enabled", bool(view.get("enabled", True)))]
    if isinstance(spec, Mapping):
        for key in spec:
            _flatten(str(key), spec[key], flat)
    return [
        SpecField(
            path=path,
            value=_fmt_value(value),
            source=provenance.get(path, SOURCE_FLEET),
            overridable=overridable is not None and overridable.allows(path),
        )
        for path, value in flat
    ]


def node_overrides(view: Mapping[str, Any]) -> list[str]:
    """Fields of a workload that a node-local override currently sets."""
    provenance: Mapping[str, str] = view.get("provenance") or {}
    return sorted(p for p, src in provenance.items() if src == "node")


def parse_override_value(field_path: str, text: str) -> Any:
    """Turn what the technician typed into the JSON value the node expects for ``field_path``.

    Raises ValueError with a message fit to show.
    """
    raw = text.strip()
    if field_path == "enabled":
        low = raw.lower()
        if low in ("true", "yes", "on", "1"):
            return True
        if low in ("false", "no", "off", "0"):
            return False
        raise ValueError("enabled must be true or false")
    if field_path.startswith("env."):
        return text  # taken literally, spaces and all
    if field_path in ("command", "args"):
        if raw.startswith("["):
            try:
                value = json.loads(raw)
            except ValueError as exc:
                raise ValueError(f"{field_path} is not a JSON list: {exc}") from None
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{field_path} must be a list of strings")
            return value
        try:
            return shlex.split(raw)
        except ValueError as exc:
            raise ValueError(f"{field_path}: {exc}") from None
    if field_path == "resources.cpus":
        try:
            return float(raw)
        except ValueError:
            raise ValueError("resources.cpus must be a number, e.g. 0.5") from None
    if field_path == "resources.memory":
        return int(raw) if raw.isdigit() else raw
    if not raw:
        raise ValueError(f"{field_path} needs a value")
    return raw


def check_override_field(field_path: str, overridable: OverrideFields | None) -> str | None:
    """None if ``field_path`` can be overridden, else why not.

    With no list from the node yet, the node itself judges the field when it is sent.
    """
    if overridable is None or overridable.allows(field_path):
        return None
    return f"{field_path!r} cannot be overridden; use one of: {overridable.help}"


# --- events and history ---------------------------------------------------------------------


@dataclass(frozen=True)
class EventRow:
    ts: float
    time: str
    origin: str  # runtime | local | synced
    who: str
    what: str
    workload: str = ""  # the workload it is about, if any (Enter opens it)

    def cells(self) -> tuple[str, str, str, str]:
        return (self.time, self.origin, self.who, self.what)


EVENT_COLUMNS: tuple[str, ...] = ("TIME (UTC)", "ORIGIN", "WHO", "WHAT")


def _history_workload(summary: str, known: Collection[str]) -> str:
    for word in summary.replace("=", " ").split():
        if word in known:
            return word
    return ""


def event_rows(
    events: Iterable[Mapping[str, Any]],
    history: Iterable[Mapping[str, Any]],
    node_id: str | None,
    query: str = "",
    workloads: Collection[str] = (),
) -> list[EventRow]:
    """Runtime events and signed changes, newest first.

    A change is ``local`` when this node signed it (possibly for a technician), ``synced`` when
    it came from another principal (an operator, another node). WHO is the person first; the
    node that signed for them is implied by ``local``. WHAT is the summary, then the document.
    ``workloads`` are names a change's summary may mention (for Enter on its row).
    """
    me = f"node:{node_id}" if node_id else None
    rows: list[EventRow] = []
    for e in events:
        ts = float(e.get("ts") or 0.0)
        workload = str(e.get("workload") or "")
        message = reason_line(str(e.get("message") or ""))
        rows.append(
            EventRow(
                ts,
                fmt_clock(ts),
                "runtime",
                "node",
                f"{workload + ': ' if workload else ''}{e.get('kind', '')}: {message}",
                workload,
            )
        )
    for h in history:
        ts = float(h.get("ts") or 0.0)
        author = str(h.get("author") or "?")
        on_behalf = h.get("on_behalf")
        local = me is not None and author == me
        who = str(on_behalf) if on_behalf else author
        if on_behalf and not local:
            who += f" via {author}"
        summary = str(h.get("summary") or "(no summary)")
        rows.append(
            EventRow(
                ts,
                fmt_clock(ts),
                "local" if local else "synced",
                who,
                f"{summary} [{h.get('doc', '')}]",
                _history_workload(summary, workloads),
            )
        )
    rows.sort(key=lambda r: r.ts, reverse=True)
    q = query.strip()
    if q:
        rows = [
            r
            for r in rows
            if matches_filter(
                "  ".join(r.cells()),
                q,
                {"origin": r.origin, "who": r.who, "what": r.what, "workload": r.workload},
            )
        ]
    return rows


# --- peers and sync -------------------------------------------------------------------------

PEER_COLUMNS: tuple[str, ...] = (
    "PEER",
    "SITE",
    "ROLE",
    "STATE",
    "LAST CONTACT",
    "IN",
    "OUT",
    "BEHIND",
    "AHEAD",
)


def peer_rows(peers: Sequence[Mapping[str, Any]], now: float) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for p in peers:
        out.append(
            (
                str(p.get("node", "?")),
                str(p.get("site") or "-"),
                str(p.get("role") or "-"),
                "up" if p.get("up") else "DOWN",
                fmt_age(p.get("last_heard"), now) + (" ago" if p.get("last_heard") else ""),
                fmt_bytes(p.get("bytes_in")),
                fmt_bytes(p.get("bytes_out")),
                str(p.get("behind_by", 0)),
                str(p.get("ahead_by", 0)),
            )
        )
    return out


def rejection_rows(sync: Mapping[str, Any]) -> list[tuple[str, str]]:
    counts: Mapping[str, int] = sync.get("rejections") or {}
    return [(cause, str(n)) for cause, n in sorted(counts.items(), key=lambda kv: -kv[1])]


def link_rows(links: Sequence[Mapping[str, Any]]) -> list[str]:
    out = []
    for link in links:
        if "error" in link:
            out.append(f"links unavailable: {link['error']}")
            continue
        parts = [f"{k}={v}" for k, v in sorted(link.items()) if v not in (None, "")]
        out.append(" ".join(parts))
    return out


# --- errors ---------------------------------------------------------------------------------


def action_error_text(code: str, message: str) -> str:
    """What to tell the technician when an action was refused."""
    if code == "forbidden_by_policy":
        return f"Refused by fleet policy: {message}"
    if code == "permission_denied":
        return f"Not allowed: {message}"
    if code == "invalid_spec":
        return f"Invalid change: {message}"
    if code == "not_found":
        return f"Not found: {message}"
    return message
