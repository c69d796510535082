"""Pure view logic of the Audit view: entries in, rows and a summary line out."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tui.model import fmt_clock, matches_filter

AUDIT_COLUMNS: tuple[str, ...] = ("#", "TIME (UTC)", "KIND", "WHO", "WHAT")
# Kinds a technician should notice first.
ALERT_KINDS = frozenset({"audit.witness-alert", "policy.refused", "sync.rejected"})


def _what(fields: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(fields.items()) if v is not None)


def is_alert(entry: Mapping[str, Any]) -> bool:
    fields = entry.get("fields") or {}
    return entry.get("kind") in ALERT_KINDS or fields.get("outcome") in (
        "failed",
        "locked",
        "refused",
    )


def audit_rows(
    entries: Iterable[Mapping[str, Any]], query: str = ""
) -> list[tuple[str, list[str], bool]]:
    """(key, cells, alert) per entry, newest first, those matching ``query``."""
    rows = []
    for e in sorted(entries, key=lambda e: -int(e.get("seq") or 0)):
        cells = [
            str(e.get("seq", "")),
            fmt_clock(float(e.get("ts") or 0.0)),
            str(e.get("kind", "")),
            str(e.get("actor", "")),
            _what(e.get("fields") or {}),
        ]
        if matches_filter(" ".join(cells), query):
            rows.append((cells[0], cells, is_alert(e)))
    return rows


def verdict_text(verdict: Mapping[str, Any] | None) -> tuple[str, bool]:
    """What the chain check says, and whether it is bad news."""
    if verdict is None:
        return "chain not checked yet (v: verify)", False
    if not verdict.get("ok"):
        broken = verdict.get("broken") or {}
        return f"CHAIN BROKEN at entry {broken.get('seq')}: {broken.get('reason')}", True
    cp = verdict.get("last_checkpoint")
    signed = f", signed up to entry {cp['seq']}" if cp else ""
    return f"chain verified: {verdict.get('entries', 0)} entries{signed}", False


def audit_summary(shown: int, head: int, query: str) -> str:
    text = f" {shown} of the newest entries (of {head}); read-only"
    if query:
        text += f"  filter: {query}"
    return text
