"""Overview: the node at a glance (identity, health, workloads by phase, host, sync links)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Grid
from textual.widgets import Static

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
from tui.screens.base import BaseView

MAX_PEERS_SHOWN = 6


def _line(text: Text, label: str, value: str, *, ok: bool = True) -> None:
    text.append(f"{label:<10}", style="bold")
    text.append(value, style="" if ok else "bold red")
    text.append("\n")


def node_panel(status: Mapping[str, Any]) -> Text:
    node = status.get("node") or {}
    t = Text(no_wrap=True, overflow="ellipsis")
    _line(t, "Node", str(node.get("id", "?")))
    _line(t, "Site", str(node.get("site", "?")))
    _line(t, "Role", str(node.get("role", "?")))
    _line(t, "Uptime", fmt_duration(node.get("uptime_s")))
    _line(t, "Version", f"{node.get('version', '?')} on {node.get('hostname', '?')}")
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


def workloads_panel(status: Mapping[str, Any]) -> Text:
    wl = status.get("workloads") or {}
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append(f"{wl.get('desired', 0)} desired", style="bold")
    if wl.get("invalid"):
        t.append(f", {wl['invalid']} INVALID", style="bold red")
    if wl.get("not_selected"):
        t.append(f", {len(wl['not_selected'])} not for this node")
    t.append("\n")
    phases = phase_summary(wl.get("phases") or {})
    if not phases:
        t.append("no workloads yet")
    # Two columns, so seven phases fit in four lines of an 80x24 console.
    for i, (phase, count) in enumerate(phases):
        t.append(f"{count:>4} ")
        t.append(f"{phase:<10}", style=PHASE_STYLES.get(phase, ""))
        t.append("\n" if i % 2 else "  ")
    t.rstrip()
    return t


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
    KEYS = (("2", "Workloads"), ("4", "Events"), ("3", "Peers"))

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        with Grid(id="overview-grid"):
            yield Static(id="panel-node", classes="panel")
            yield Static(id="panel-health", classes="panel")
            yield Static(id="panel-workloads", classes="panel")
            yield Static(id="panel-host", classes="panel")
            yield Static(id="panel-peers", classes="panel")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        super().on_mount()
        titles = {
            "#panel-node": "Node",
            "#panel-health": "Health",
            "#panel-workloads": "Workloads",
            "#panel-host": "Host",
            "#panel-peers": "Peers and hubs",
        }
        for sel, title in titles.items():
            self.query_one(sel, Static).border_title = title
        if self.ctx.status is not None:
            self.show(self.ctx.status, None)

    def load(self) -> None:
        if self.ctx.status is not None:
            self.show(self.ctx.status, self.ctx.extra.get("sync.peers"))
        self.load_peers()

    @work(exclusive=True, group="overview", exit_on_error=False)
    async def load_peers(self) -> None:
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
        self.query_one("#panel-node", Static).update(node_panel(status))
        self.query_one("#panel-health", Static).update(
            health_panel(status, self.ctx.extra.get("site.status"))
        )
        self.query_one("#panel-workloads", Static).update(workloads_panel(status))
        self.query_one("#panel-host", Static).update(host_panel(status))
        panel = self.query_one("#panel-peers", Static)
        rows = panel.content_region.height or MAX_PEERS_SHOWN
        panel.update(peers_panel(peers, self.ctx.clock(), rows))
        self.add_class("-loaded")
