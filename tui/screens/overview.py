"""Overview: problems first (workloads that are not healthy and the node's own problems, each
with its reason; Enter opens one), then the node, its health, its host and, once enrolled, its
peers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Grid
from textual.widgets import DataTable, Static

from noderuntime.errors import NodeRuntimeError
from tui.api import is_unknown_method
from tui.model import (
    PHASE_STYLES,
    bar,
    fmt_age,
    fmt_bytes,
    fmt_duration,
    host_gauges,
    phase_summary,
    podman_state,
    site_summary,
    store_problem,
    store_state,
    sync_summary,
)
from tui.problems import Problem, node_problems, workload_problems
from tui.screens.base import BaseView
from tui.widgets.row_table import RowTable

MAX_PEERS_SHOWN = 6


def _line(text: Text, label: str, value: str, *, ok: bool = True) -> None:
    text.append(f"{label:<10}", style="bold")
    text.append(value, style="" if ok else "bold red")
    text.append("\n")


def node_panel(status: Mapping[str, Any]) -> Text:
    """Who the node is (two lines), then its host's gauges."""
    node = status.get("node") or {}
    t = Text(no_wrap=True, overflow="ellipsis")
    _line(t, "Node", f"{node.get('id', '?')} @ {node.get('site', '?')} ({node.get('role', '?')})")
    _line(
        t,
        "Uptime",
        f"{fmt_duration(node.get('uptime_s'))}, v{node.get('version', '?')}"
        f" on {node.get('hostname', '?')}",
    )
    t.append_text(host_panel(status))
    t.rstrip()
    return t


def health_panel(status: Mapping[str, Any], site: Mapping[str, Any] | None = None) -> Text:
    t = Text(no_wrap=True, overflow="ellipsis")
    podman, ok = podman_state(status.get("podman") or {})
    _line(t, "Podman", podman, ok=ok)
    store_info = status.get("store") or {}
    store, ok = store_state(store_info)
    _line(t, "Store", store, ok=ok)
    problem = store_problem(store_info)
    if problem:
        t.append(f"  {problem}\n", style="bold red")
    rec = status.get("reconciler") or {}
    _line(t, "Reconcile", "converged" if rec.get("converged") else "working")
    sync, ok = sync_summary(status.get("sync"))
    _line(t, "Sync", sync, ok=ok)
    quorum = site_summary(site)
    if quorum is not None:
        _line(t, "Site", quorum[0], ok=quorum[1])
    t.rstrip()
    return t


def workloads_line(status: Mapping[str, Any]) -> Text:
    """``6 desired: 1 Failed 1 Unhealthy 2 Running``, for the problems panel's title."""
    wl = status.get("workloads") or {}
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append(f"{wl.get('desired', 0)} desired", style="bold")
    if wl.get("invalid"):
        t.append(f", {wl['invalid']} INVALID", style="bold red")
    if wl.get("not_selected"):
        t.append(f", {len(wl['not_selected'])} not for this node")
    phases = phase_summary(wl.get("phases") or {})
    for i, (phase, count) in enumerate(phases):
        t.append(": " if i == 0 else " ")
        t.append(f"{count} ")
        t.append(phase, style=PHASE_STYLES.get(phase, ""))
    return t


PROBLEM_NAME_MAX = 20
STATE_WIDTH = 10
MIN_WHY_WIDTH = 20
# Cell padding of three columns, the panel's border and padding, a scrollbar.
PROBLEM_CHROME = 3 * 2 + 4 + 2


def problem_rows(
    workloads: list[Problem], node: list[Problem], desired: int
) -> list[tuple[str, str, str, str]]:
    """(key, name, state, why) rows, worst first; the node's own first among equals."""
    ranked = [(p.rank, 0, f"node:{p.what}", "(node)", p.what, p.reason) for p in node]
    ranked += [(p.rank, 1, p.name, p.name, p.what, p.reason) for p in workloads]
    ranked.sort(key=lambda r: (r[0], r[1]))
    rows = [r[2:] for r in ranked]
    if not rows:
        everything = f"all {desired} workloads run as wanted" if desired else "no workloads yet"
        rows.append(("", "", "OK", f"{everything}; the node reports no problems"))
    return rows


def host_panel(status: Mapping[str, Any]) -> Text:
    t = Text(no_wrap=True, overflow="ellipsis")
    for g in host_gauges(status.get("host") or {}):
        t.append(f"{g.label:<7}", style="bold")
        frac = g.fraction
        t.append(bar(frac, 10), style="bold red" if frac is not None and frac > 0.9 else "")
        t.append(f" {g.text}\n")
    t.rstrip()
    return t


def peers_panel(
    sync_info: Mapping[str, Any] | None, now: float, max_shown: int = MAX_PEERS_SHOWN
) -> Text:
    t = Text(no_wrap=True, overflow="ellipsis")
    if sync_info is None or not sync_info.get("enabled"):
        t.append("sync not configured on this node (not enrolled in a fleet)")
        return t
    peers = list(sync_info.get("peers") or [])
    if not peers:
        t.append("no peers heard from yet")
        return t
    max_shown = max(1, max_shown)
    if len(peers) > max_shown:
        max_shown -= 1  # room for the "and N more" line
    for p in peers[:max_shown]:
        up = bool(p.get("up"))
        t.append(f"{p.get('node', '?'):<16} ")
        t.append("up  " if up else "DOWN", style="green" if up else "bold red")
        t.append(f" last {fmt_age(p.get('last_heard'), now):>6}")
        behind = int(p.get("behind_by") or 0)
        t.append(
            f"  behind {behind}" if behind else "  in sync",
            style="yellow" if behind else "",
        )
        t.append(
            f"  {p.get('role', '?')} @ {p.get('site', '?')}"
            f"  in {fmt_bytes(p.get('bytes_in'))} out {fmt_bytes(p.get('bytes_out'))}"
        )
        t.append("\n")
    if len(peers) > max_shown:
        t.append(f"... and {len(peers) - max_shown} more (view 3)")
    t.rstrip()
    return t


class OverviewScreen(BaseView):
    VIEW_NAME = "Overview"
    KEYS = (("Enter", "Open"), ("2", "Workloads"), ("4", "Events"), ("3", "Peers"))

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self.views: list[dict[str, Any]] | None = None
        self.problem_keys: list[str] = []
        self.shown_problems: tuple[Any, ...] = ()

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        with Grid(id="overview-grid"):
            yield RowTable(id="panel-problems")
            yield Static(id="panel-node", classes="panel")
            yield Static(id="panel-health", classes="panel")
            yield Static(id="panel-peers", classes="panel")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        super().on_mount()
        titles = {
            "#panel-problems": "Problems",
            "#panel-node": "Node",
            "#panel-health": "Health",
            "#panel-peers": "Peers and hubs",
        }
        for sel, title in titles.items():
            self.query_one(sel).border_title = title
        self.query_one("#panel-problems", DataTable).show_header = False
        self.query_one("#panel-problems", DataTable).focus()
        if self.ctx.status is not None:
            self.show(self.ctx.status, None)

    def load(self) -> None:
        if self.ctx.status is not None:
            self.show(self.ctx.status, self.ctx.extra.get("sync.peers"))
        self.load_peers()

    @work(exclusive=True, group="overview", exit_on_error=False)
    async def load_peers(self) -> None:
        try:
            self.views = list(await self.ctx.api.call("workloads.list"))
        except NodeRuntimeError as exc:
            # The previous list stays; the link state shows in the header.
            if self.views is None:
                self.notify(str(exc), title="Workloads", severity="error")
                self.views = []
        status = self.ctx.status or {}
        sync = status.get("sync") or {}
        info: dict[str, Any] | None
        if not sync.get("enabled"):
            info = None
        else:
            try:
                info = await self.ctx.api.call("sync.peers")
            except NodeRuntimeError as exc:
                info = None if is_unknown_method(exc) else self.ctx.extra.get("sync.peers")
        self.ctx.extra["sync.peers"] = info
        site: dict[str, Any] | None = None
        if sync.get("enabled"):
            try:
                site = await self.ctx.api.call("site.status")
            except NodeRuntimeError:
                site = None  # an older node, or site quorum not started: no Site line
        self.ctx.extra["site.status"] = site
        self.show(status, info)

    def show(self, status: Mapping[str, Any], peers: Mapping[str, Any] | None) -> None:
        self.show_problems(status)
        self.query_one("#panel-node", Static).update(node_panel(status))
        self.query_one("#panel-health", Static).update(
            health_panel(status, self.ctx.extra.get("site.status"))
        )
        panel = self.query_one("#panel-peers", Static)
        # Not enrolled: no peers to show, and the Health panel already says so.
        enrolled = bool((status.get("sync") or {}).get("enabled"))
        if panel.display != enrolled:
            panel.display = enrolled
        if enrolled:
            rows = panel.content_region.height or MAX_PEERS_SHOWN
            panel.update(peers_panel(peers, self.ctx.clock(), rows))
        if self.views is not None:
            self.add_class("-loaded")

    def show_problems(self, status: Mapping[str, Any]) -> None:
        table: DataTable[Text] = self.query_one("#panel-problems", DataTable)
        wl = status.get("workloads") or {}
        desired = int(wl.get("desired") or 0)
        workloads = workload_problems(self.views or [])
        node = node_problems(status, self.ctx.clock())
        count = len(workloads) + len(node)
        title = Text("Problems" if count else "No problems", style="bold red" if count else "")
        title.append(" | ", style="")
        title.append_text(workloads_line(status))
        table.border_title = title
        rows = problem_rows(workloads, node, desired) if self.views is not None else []
        names = [r[1] for r in rows]
        name_chars = min(PROBLEM_NAME_MAX, max([1, *(len(n) for n in names)]))
        why_chars = max(MIN_WHY_WIDTH, self.size.width - name_chars - STATE_WIDTH - PROBLEM_CHROME)
        key = (tuple(rows), why_chars)
        if key == self.shown_problems:
            return
        self.shown_problems = key
        selected = table.cursor_row
        table.clear(columns=True)
        table.add_column("NAME", width=name_chars)
        table.add_column("STATE", width=STATE_WIDTH)
        table.add_column("WHY", width=why_chars)
        for _, name, state, why in rows:
            style = PHASE_STYLES.get(state.split("/")[0], "bold red" if name == "(node)" else "")
            # The reason wraps at word boundaries; the row grows to fit it.
            table.add_row(
                Text(name, style="bold"), Text(state, style=style), Text(why), height=None
            )
        self.problem_keys = [r[0] for r in rows]
        if 0 <= selected < table.row_count:
            table.move_cursor(row=selected, animate=False)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        """Enter: the detail of the workload under the cursor (a node problem: its view)."""
        from tui.screens.detail import WorkloadDetailScreen

        row = self.query_one("#panel-problems", DataTable).cursor_row
        if not 0 <= row < len(self.problem_keys):
            return
        key = self.problem_keys[row]
        if key == "node:Sync":
            self.app.call_later(self.app.run_action, "view('peers')")
        elif key and not key.startswith("node:"):
            self.app.push_screen(WorkloadDetailScreen(self.ctx, key))
