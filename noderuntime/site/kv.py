"""Leases in a JetStream KV bucket on the site cluster, behind the small ``LeaseStore`` protocol.

One bucket per site, history 1, replicas = min(5, cluster size), the lease TTL as the bucket's
max age (garbage collection only: ``site/lease.py`` never relies on expiry), file storage on the
cluster's ``sync_interval: always`` JetStream. Revisions are stream sequences: the fencing token.
NATS errors are translated here; nothing above imports nats.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from noderuntime.errors import HandoffRefusedError, LeaseConflictError, SiteError

if TYPE_CHECKING:
    from nats.js.client import JetStreamContext
    from nats.js.kv import KeyValue

log = logging.getLogger(__name__)

KV_TIMEOUT_S = 1.0
CALL_TIMEOUT_S = 1.2
T = TypeVar("T")
MAX_VALUE_BYTES = 1024
_BUCKET_CHARS_RE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class Entry:
    """One key as read: ``revision`` None means no entry; ``deleted`` a delete marker."""

    key: str
    revision: int | None
    value: bytes | None
    deleted: bool = False


@dataclass(frozen=True)
class Replication:
    """The bucket's stream as of the last listing: its leader and the replicas caught up."""

    leader: str | None
    current: tuple[str, ...] = ()
    lagging: tuple[str, ...] = ()  # replicas not caught up (down, cut off, or catching up)


class LeaseStore(Protocol):
    """What the lease manager needs of a store. Every write is a compare-and-set."""

    async def read(self, key: str) -> Entry: ...

    async def keys(self) -> list[str]: ...

    async def create(self, key: str, value: bytes) -> int:
        """Write ``key`` if it has no live entry; raises LeaseConflictError if it has one."""
        ...

    async def update(self, key: str, value: bytes, last: int) -> int:
        """Write ``key`` if its revision is still ``last``; else LeaseConflictError."""
        ...

    async def delete(self, key: str, last: int) -> None:
        """Delete ``key`` if its revision is still ``last``; else LeaseConflictError."""
        ...

    async def put(self, key: str, value: bytes) -> int:
        """An unconditional write, for presence and cordon records (never for leases)."""
        ...

    def replication(self) -> Replication | None:
        """Who led the bucket's stream at the last :meth:`keys` (None: not replicated)."""
        ...

    async def hand_leadership(self, to: str) -> None:
        """Ask the bucket's stream leader to pass its leadership to the replica ``to``."""
        ...

    def watch_leadership(self, on_elected: Callable[[], None]) -> None:
        """Call ``on_elected`` whenever the bucket's stream elects a leader; ``replication()``
        then names it (an election must not wait for the next listing to be noticed)."""
        ...


def bucket_name(site: str) -> str:
    return "nr_site_" + _BUCKET_CHARS_RE.sub("_", site)


MAX_REPLICAS = 5  # JetStream's own limit


def bucket_replicas(cluster_size: int) -> int:
    """Every member carries the bucket, up to JetStream's limit of 5.

    With fewer replicas than members, a majority of the site can hold a minority of the
    replicas (2 of 3 on the 2 side of a 3 + 2 split) and no side could place anything.
    """
    return max(1, min(MAX_REPLICAS, cluster_size))


def election_advisory(data: bytes) -> Replication | None:
    """The stream's leader and caught-up replicas from a leader-elected advisory, or None."""
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("leader"), str):
        return None
    replicas = doc.get("replicas")
    named = [
        r
        for r in (replicas if isinstance(replicas, list) else [])
        if isinstance(r, dict) and isinstance(r.get("name"), str)
    ]
    current = tuple(sorted(r["name"] for r in named if r.get("current") is True))
    lagging = tuple(sorted(r["name"] for r in named if r.get("current") is not True))
    return Replication(doc["leader"] or None, current, lagging)


async def _raise_replicas(js: JetStreamContext, stream: str, want: int) -> None:
    """A bucket made when the site was smaller (or by an older release, with 3) grows to
    ``want`` replicas. Never shrinks it: a member that lists fewer peers may be misconfigured.
    Best effort: with members down JetStream refuses (too few peers), and the bucket as it is
    still serves; the next bind tries again."""
    import nats.errors
    import nats.js.errors

    try:
        info = await js.stream_info(stream)
        config = info.config
        if (config.num_replicas or 1) >= want:
            return
        config.num_replicas = want
        await js.update_stream(config)
        log.info("site lease bucket %s now has %d replicas", stream, want)
    except (nats.errors.Error, nats.js.errors.Error, OSError) as exc:
        log.warning("site lease bucket %s: could not raise replicas to %d: %r", stream, want, exc)


class JetStreamLeaseStore:
    """``LeaseStore`` over nats-py's KV. Build it with :meth:`open`."""

    def __init__(self, kv: KeyValue, js: JetStreamContext, bucket: str, nc: Any = None) -> None:
        self._kv = kv
        self._js = js
        self._nc = nc  # for JetStream API calls nats-py has no method for
        self._stream = f"KV_{bucket}"
        self._prefix = f"$KV.{bucket}."
        self._replication: Replication | None = None
        self._on_elected: Callable[[], None] | None = None
        self._advisories: Any = None

    @classmethod
    async def open(
        cls, js: JetStreamContext, *, site: str, cluster_size: int, ttl_s: float, nc: Any = None
    ) -> JetStreamLeaseStore:
        """Bind to the site's bucket, creating it if no node has yet."""
        import nats.errors
        import nats.js.errors
        from nats.js.api import KeyValueConfig, StorageType

        name = bucket_name(site)
        try:
            try:
                kv = await js.key_value(name)
                await _raise_replicas(js, f"KV_{name}", bucket_replicas(cluster_size))
            except nats.js.errors.BucketNotFoundError:
                kv = await js.create_key_value(
                    KeyValueConfig(
                        bucket=name,
                        history=1,
                        ttl=ttl_s,
                        replicas=bucket_replicas(cluster_size),
                        storage=StorageType.FILE,
                        max_value_size=MAX_VALUE_BYTES,
                        description="noderuntime site leases (issue 11)",
                    )
                )
        except (nats.errors.Error, nats.js.errors.Error, OSError) as exc:
            raise SiteError(f"site lease bucket {name} unavailable: {exc!r}") from exc
        return cls(kv, js, name, nc)

    async def read(self, key: str) -> Entry:
        import nats.errors
        import nats.js.errors

        try:
            e = await self._kv.get(key)
        except nats.js.errors.KeyDeletedError as exc:
            rev = exc.entry.revision if exc.entry is not None else None
            return Entry(key, rev, None, deleted=True)
        except nats.js.errors.KeyNotFoundError:
            return Entry(key, None, None)
        except (nats.errors.Error, nats.js.errors.Error, OSError) as exc:
            raise SiteError(f"reading lease {key}: {exc!r}") from exc
        return Entry(key, e.revision, e.value)

    async def keys(self) -> list[str]:
        import nats.errors
        import nats.js.errors

        # One request with a timeout: nats-py's KeyValue.keys() waits on a watcher with none.
        try:
            info = await self._js.stream_info(self._stream, subjects_filter=">")
        except (nats.errors.Error, nats.js.errors.Error, OSError) as exc:
            raise SiteError(f"listing leases: {exc!r}") from exc
        cluster = info.cluster
        if cluster is not None:
            named = [(r.name, bool(r.current)) for r in cluster.replicas or [] if r.name]
            current = tuple(sorted(name for name, ok in named if ok))
            lagging = tuple(sorted(name for name, ok in named if not ok))
            self._replication = Replication(cluster.leader, current, lagging)
        subjects = info.state.subjects or {}
        return sorted(s[len(self._prefix) :] for s in subjects if s.startswith(self._prefix))

    def replication(self) -> Replication | None:
        return self._replication

    async def watch_elections(self, on_elected: Callable[[], None]) -> None:
        """Subscribe to JetStream's leader-elected advisory for the bucket's stream."""
        import nats.errors

        self._on_elected = on_elected
        if self._nc is None or self._advisories is not None:
            return
        try:
            self._advisories = await self._nc.subscribe(
                f"$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.{self._stream}", cb=self._elected
            )
        except (nats.errors.Error, OSError) as exc:
            # The presence rounds still list the stream's leader: only slower to notice.
            log.warning("site leases: no leader-elected advisories: %r", exc)

    async def _elected(self, msg: Any) -> None:
        advisory = election_advisory(msg.data)
        if advisory is None:
            log.warning("site leases: ignored a malformed leader-elected advisory")
            return
        self._replication = advisory
        if self._on_elected is not None:
            self._on_elected()

    async def hand_leadership(self, to: str) -> None:
        import nats.errors

        # JetStream's own leader transfer (nats-server >= 2.11: a preferred replica); the
        # stream is without a leader for about 0.1 s, well inside a holder's renewal slack.
        subject = f"$JS.API.STREAM.LEADER.STEPDOWN.{self._stream}"
        body = json.dumps({"placement": {"preferred": to}}).encode()
        if self._nc is None:
            raise SiteError("no connection to hand the lease stream over")
        try:
            msg = await self._nc.request(subject, body, timeout=KV_TIMEOUT_S)
            answer = json.loads(msg.data)
        except (nats.errors.Error, OSError, ValueError) as exc:
            raise SiteError(f"handing the lease stream to {to}: {exc!r}") from exc
        if not isinstance(answer, dict) or answer.get("success") is not True:
            raise HandoffRefusedError(f"handing the lease stream to {to}: {answer!r}")

    async def create(self, key: str, value: bytes) -> int:
        import nats.errors
        import nats.js.errors

        try:
            return await self._kv.create(key, value)
        except nats.js.errors.KeyWrongLastSequenceError as exc:
            raise LeaseConflictError(f"lease {key} is held") from exc
        except (nats.errors.Error, nats.js.errors.Error, OSError) as exc:
            raise SiteError(f"creating lease {key}: {exc!r}") from exc

    async def update(self, key: str, value: bytes, last: int) -> int:
        import nats.errors
        import nats.js.errors

        try:
            return await self._kv.update(key, value, last=last)
        except nats.js.errors.KeyWrongLastSequenceError as exc:
            raise LeaseConflictError(f"lease {key} moved past revision {last}") from exc
        except (nats.errors.Error, nats.js.errors.Error, OSError) as exc:
            raise SiteError(f"updating lease {key}: {exc!r}") from exc

    async def delete(self, key: str, last: int) -> None:
        import nats.errors
        import nats.js.errors

        try:
            await self._kv.delete(key, last=last)
        except nats.js.errors.APIError as exc:
            if exc.err_code in (10071, 10164):
                raise LeaseConflictError(f"lease {key} moved past revision {last}") from exc
            raise SiteError(f"deleting lease {key}: {exc!r}") from exc
        except (nats.errors.Error, nats.js.errors.Error, OSError) as exc:
            raise SiteError(f"deleting lease {key}: {exc!r}") from exc

    async def put(self, key: str, value: bytes) -> int:
        import nats.errors
        import nats.js.errors

        try:
            return await self._kv.put(key, value)
        except (nats.errors.Error, nats.js.errors.Error, OSError) as exc:
            raise SiteError(f"writing {key}: {exc!r}") from exc


class MemoryLeaseStore:
    """``LeaseStore`` in memory with the same CAS rules: for unit tests and a site of one."""

    def __init__(self) -> None:
        self._seq = 0
        self._data: dict[str, Entry] = {}
        self.available = True
        self.stream: Replication | None = None  # a replicated stream, as a test sets it
        self.handed_to: list[str] = []
        self.refuse_handoffs = 0  # a test: the next N transfers are answered with an error
        self._watchers: list[Callable[[], None]] = []

    def _check(self) -> None:
        if not self.available:
            raise SiteError("memory store unavailable (test)")

    def _write(self, key: str, value: bytes | None, deleted: bool = False) -> int:
        self._seq += 1
        self._data[key] = Entry(key, self._seq, value, deleted)
        return self._seq

    async def read(self, key: str) -> Entry:
        self._check()
        return self._data.get(key, Entry(key, None, None))

    async def keys(self) -> list[str]:
        self._check()
        return sorted(k for k, e in self._data.items() if not e.deleted)

    async def create(self, key: str, value: bytes) -> int:
        self._check()
        e = self._data.get(key)
        if e is not None and not e.deleted:
            raise LeaseConflictError(f"lease {key} is held")
        return self._write(key, value)

    async def update(self, key: str, value: bytes, last: int) -> int:
        self._check()
        e = self._data.get(key)
        if e is None or e.revision != last:
            raise LeaseConflictError(f"lease {key} moved past revision {last}")
        return self._write(key, value)

    async def delete(self, key: str, last: int) -> None:
        self._check()
        e = self._data.get(key)
        if e is None or e.revision != last:
            raise LeaseConflictError(f"lease {key} moved past revision {last}")
        self._write(key, None, deleted=True)

    async def put(self, key: str, value: bytes) -> int:
        self._check()
        return self._write(key, value)

    def replication(self) -> Replication | None:
        return self.stream

    async def hand_leadership(self, to: str) -> None:
        self._check()
        if self.refuse_handoffs:
            self.refuse_handoffs -= 1
            raise HandoffRefusedError("JetStream system temporarily unavailable (test)")
        self.handed_to.append(to)
        old = self.stream or Replication(None)
        followers = {*old.current, *([old.leader] if old.leader else [])} - {to}
        self.stream = Replication(to, tuple(sorted(followers)))

    def watch_leadership(self, on_elected: Callable[[], None]) -> None:
        self._watchers.append(on_elected)

    def elect(self, leader: str, current: tuple[str, ...]) -> None:
        """What an election does: a new leader, and the advisory every watcher hears."""
        self.stream = Replication(leader, current)
        for watcher in self._watchers:
            watcher()

    def expire(self, key: str) -> None:
        """What the bucket's max age does: the entry vanishes without a marker."""
        self._data.pop(key, None)


class NatsLeaseStore:
    """The site's bucket through the node's own nats-server, bound on first use.

    At start the cluster may have no JetStream quorum yet (the whole site is booting): every
    call fails with SiteError until it has one, and the manager simply tries again next tick.
    """

    def __init__(self, url: str, *, site: str, cluster_size: int, ttl_s: float) -> None:
        self._url = url
        self._site = site
        self._cluster_size = cluster_size
        self._ttl_s = ttl_s
        self._nc: Any = None
        self._inner: JetStreamLeaseStore | None = None
        self._on_elected: Callable[[], None] | None = None

    async def _store(self) -> JetStreamLeaseStore:
        if self._inner is not None:
            return self._inner
        import nats
        import nats.errors

        if self._nc is None:
            try:
                self._nc = await nats.connect(
                    self._url,
                    connect_timeout=KV_TIMEOUT_S,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    name="noderuntime-site",
                )
            except (nats.errors.Error, OSError) as exc:
                raise SiteError(f"cannot reach the node's nats-server: {exc!r}") from exc
        js = self._nc.jetstream(timeout=KV_TIMEOUT_S)
        self._inner = await JetStreamLeaseStore.open(
            js, site=self._site, cluster_size=self._cluster_size, ttl_s=self._ttl_s, nc=self._nc
        )
        if self._on_elected is not None:
            await self._inner.watch_elections(self._on_elected)
        return self._inner

    async def close(self) -> None:
        if self._nc is not None:
            from noderuntime.sync.nats_channel import close_bounded

            await close_bounded(self._nc)
        self._nc = None
        self._inner = None

    async def _bounded(self, call: Callable[[JetStreamLeaseStore], Awaitable[T]], what: str) -> T:
        # No call may outlive a renewal period: a hung request must not hold up fencing.
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                return await self._call(call)
        except TimeoutError as exc:
            raise SiteError(f"{what}: no answer in {CALL_TIMEOUT_S} s") from exc

    async def _call(self, call: Callable[[JetStreamLeaseStore], Awaitable[T]]) -> T:
        return await call(await self._store())

    async def read(self, key: str) -> Entry:
        return await self._bounded(lambda s: s.read(key), f"reading {key}")

    async def keys(self) -> list[str]:
        return await self._bounded(lambda s: s.keys(), "listing leases")

    async def create(self, key: str, value: bytes) -> int:
        return await self._bounded(lambda s: s.create(key, value), f"creating {key}")

    async def update(self, key: str, value: bytes, last: int) -> int:
        return await self._bounded(lambda s: s.update(key, value, last), f"updating {key}")

    async def delete(self, key: str, last: int) -> None:
        await self._bounded(lambda s: s.delete(key, last), f"deleting {key}")

    async def put(self, key: str, value: bytes) -> int:
        return await self._bounded(lambda s: s.put(key, value), f"writing {key}")

    def replication(self) -> Replication | None:
        return self._inner.replication() if self._inner is not None else None

    async def hand_leadership(self, to: str) -> None:
        await self._bounded(lambda s: s.hand_leadership(to), f"handing the lease stream to {to}")

    def watch_leadership(self, on_elected: Callable[[], None]) -> None:
        # Subscribed when the bucket is bound (``_store``): the connection may not exist yet.
        self._on_elected = on_elected
