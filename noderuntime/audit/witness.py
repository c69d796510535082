"""A hub witnesses the audit checkpoints nodes publish, and notices a log cut or rewritten.

Each node publishes its newest checkpoint in its own document (``info["audit"]``, one record
overwritten at most every checkpoint interval, so the document's history grows slowly). A hub
keeps the newest one it accepted per node. A later checkpoint must extend it:

- fewer entries than before: the log was truncated or replaced;
- as many entries with another head: it was rewritten;
- more entries, and a link (the head the node now reads at the earlier checkpoint's entry)
  that differs from what the hub saw there: the entries before it were rewritten.

A checkpoint whose links skip the one the hub saw (the hub was away for more than
``MAX_LINKS`` checkpoints) cannot be checked and is accepted as the new reference; the
docs say so. The checkpoint reached the hub inside an update the node signed, so who
published it is already verified by sync.
"""

from __future__ import annotations

from noderuntime.audit.chain import Checkpoint


def judge(seen: Checkpoint | None, new: Checkpoint) -> str | None:
    """Why ``new`` does not extend ``seen`` (a tampered log), or None if it may."""
    if seen is None or new.node != seen.node:
        return None
    if new.seq < seen.seq:
        return (
            f"audit log of {new.node} went back from {seen.seq} entries to {new.seq}: "
            "it was truncated or replaced"
        )
    if new.seq == seen.seq:
        if new.head != seen.head:
            return (
                f"audit log of {new.node} was rewritten: entry {seen.seq} now has another hash "
                "than the checkpoint this hub witnessed"
            )
        return None
    for seq, head in new.links:
        if seq == seen.seq and head != seen.head:
            return (
                f"audit log of {new.node} was rewritten: entry {seen.seq} now has another hash "
                "than the checkpoint this hub witnessed"
            )
    return None


def is_newer(seen: Checkpoint | None, new: Checkpoint) -> bool:
    """Whether ``new`` should replace ``seen`` as the hub's reference (never goes back)."""
    return seen is None or new.seq > seen.seq
