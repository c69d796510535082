"""The tamper-evident audit trail (issue 13 §3): who did what on this node, hash-chained.

``chain`` is pure (entry hashing, signed checkpoints, verification), ``store`` keeps entries and
checkpoints (an ABC, SQLite and memory, one contract test), ``log`` is the :class:`Audit` the
rest of the node records into, and ``witness`` is the hub's check of the checkpoints nodes
publish. Layer 2: anything above (reconcile, sync, api, node) may record.
"""
