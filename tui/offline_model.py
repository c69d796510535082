"""Pure view logic of the screens a site with no network needs: images, network, fleet join,
history. Plain data in, rows and text out; the screens only draw them."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tui.model import fmt_bytes

IMAGE_COLUMNS = ("IMAGE", "SIZE", "USED BY")
# Runtime events that are a person's action (the rest are the node's own doing).
PERSON_EVENT_KINDS = frozenset({"restarted", "image-loaded", "network-set", "enrolled"})
# "restarted by technician:ann", "loaded x from y (by root)": who, at the end of the message.
_BY = re.compile(r"\s*\(?by ([\w:.@-]+)\)?$")


def fmt_when(ts: float) -> str:
    """``09-21 14:11:40`` (UTC): short enough to leave the row to who and what."""
    return time.strftime("%m-%d %H:%M:%S", time.gmtime(ts))


def image_rows(images: Iterable[Mapping[str, Any]]) -> list[tuple[str, list[str]]]:
    """(key, cells) per image: missing ones (wanted, not on the node) first."""
    rows = []
    for img in sorted(images, key=lambda i: (bool(i.get("present")), i.get("names") or [])):
        names = ", ".join(img.get("names") or []) or "<untagged>"
        size = fmt_bytes(img.get("size_bytes")) if img.get("present") else "MISSING"
        users = ", ".join(img.get("workloads") or []) or "-"
        rows.append((str(img.get("id") or names), [names, size, users]))
    return rows


def images_summary(images: Sequence[Mapping[str, Any]]) -> str:
    missing = [i for i in images if not i.get("present")]
    present = len(images) - len(missing)
    text = f" {present} image{'' if present == 1 else 's'} on this node"
    if missing:
        waiting = sorted({w for i in missing for w in i.get("workloads") or []})
        text += f"; {len(missing)} MISSING, needed by {', '.join(waiting)}: press l to load"
    else:
        text += "; l: load an archive from a USB stick or /mnt"
    return text


def load_progress_text(item: Mapping[str, Any]) -> str:
    phase = item.get("phase")
    total = int(item.get("total_bytes") or 0)
    sent = int(item.get("sent_bytes") or 0)
    if phase == "verifying":
        return f"Checking {item.get('path', 'the archive')}..."
    if phase == "loaded":
        text = f"Loaded {', '.join(item.get('names') or []) or 'an untagged image'}."
        if item.get("workloads"):
            text += f" Starting now: {', '.join(item['workloads'])}."
        return text
    pct = f" {100 * sent // total}%" if total else ""
    return f"Loading{pct}: {fmt_bytes(sent)} of {fmt_bytes(total)}"


# --- history ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryRow:
    ts: float
    who: str
    what: str
    person: bool


def history_rows(
    history: Iterable[Mapping[str, Any]], events: Iterable[Mapping[str, Any]]
) -> list[HistoryRow]:
    """People's actions first (signed changes made for a person or by an operator, and runtime
    events a person caused), newest first; then the nodes' own changes."""
    rows: list[HistoryRow] = []
    for h in history:
        author = str(h.get("author") or "?")
        on_behalf = h.get("on_behalf")
        who = str(on_behalf) if on_behalf else author
        person = bool(h.get("person", on_behalf or not author.startswith("node:")))
        what = str(h.get("summary") or "(no summary)")
        rows.append(HistoryRow(float(h.get("ts") or 0.0), who, what, person))
    for e in events:
        if e.get("kind") not in PERSON_EVENT_KINDS:
            continue
        subject = f"{e['workload']}: " if e.get("workload") else ""
        message = str(e.get("message", ""))
        by = _BY.search(message)
        who = by.group(1) if by else "root"
        what = f"{subject}{message[: by.start()] if by else message}".rstrip()
        rows.append(HistoryRow(float(e.get("ts") or 0.0), who, what, True))
    rows.sort(key=lambda r: (not r.person, -r.ts))
    return rows


# --- network ---------------------------------------------------------------------------------


def network_lines(net: Mapping[str, Any]) -> list[str]:
    """The node's network for people: each link, its addresses, the gateway and DNS."""
    lines = []
    manager = net.get("manager") or "none"
    lines.append(f"Managed by: {manager}" + ("" if net.get("can_set") else " (read-only here)"))
    for link in net.get("links") or []:
        addrs = ", ".join(link.get("addresses") or []) or "no address"
        state = str(link.get("state") or "?").upper()
        lines.append(f"{link.get('name')}: {state}  {addrs}  {link.get('mac') or ''}".rstrip())
    lines.append(f"Gateway: {net.get('gateway') or 'none'}")
    lines.append(f"DNS: {', '.join(net.get('dns') or []) or 'none'}")
    if net.get("why_not"):
        lines.append(f"Setting: {net['why_not']}")
    return lines


# --- fleet join ------------------------------------------------------------------------------


def enrolment_lines(info: Mapping[str, Any]) -> list[str]:
    """Enrolment state and, per peer, whether its link is up and the last error."""
    if not info.get("enrolled"):
        return [
            "Not enrolled: this node runs on its own. To join a fleet, read this node's key",
            f"to the operator: {info.get('public_key', '?')}",
            "They issue a credential for it; put it on a stick and press j.",
        ]
    lines = [f"Enrolled in {info.get('fleet_id', '?')} as node {info.get('node', '?')}"]
    sync = info.get("sync") or {}
    if info.get("problem"):
        lines.append(f"Sync is down: {info['problem']}")
    elif sync.get("connected"):
        lines.append(f"Sync connected via {sync.get('nats_url', '?')}")
    else:
        lines.append(f"Sync OFFLINE: {sync.get('last_error') or 'no link to the hub yet'}")
    for lk in info.get("links") or []:
        state = "up" if lk.get("up") else "DOWN"
        err = f": {lk['error']}" if lk.get("error") and not lk.get("up") else ""
        lines.append(f"  link {lk.get('peer')}: {state}{err}")
    for p in info.get("peers") or []:
        state = "up" if p.get("up") else "DOWN"
        err = f"  last error: {p['last_error']}" if p.get("last_error") else ""
        lines.append(f"  {p.get('node')}: {state}{err}")
    return lines
