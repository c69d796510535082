"""Secrets: sealing, the spec, which boxes a container needs, the routes and the reconciler."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from noderuntime.api.services import NodeFacts
from noderuntime.audit.chain import AuditKind
from noderuntime.audit.log import MemoryAudit
from noderuntime.cli.secret import build_record
from noderuntime.crdt import schema
from noderuntime.crdt.state import StateStore
from noderuntime.crdt.store import MemoryStore
from noderuntime.errors import ApiError, InvalidInputError, SecretError, SpecError
from noderuntime.identity import keys
from noderuntime.identity.sealing import (
    Sealed,
    load_or_create_key,
    open_sealed,
    public_key_text,
    public_raw,
    seal,
)
from noderuntime.reconcile.secrets import (
    ROTATION_SLOT_S,
    Deferred,
    SecretFile,
    SecretMounts,
    check_record,
    match_targets,
    mounts_for,
    note_versions,
    plain_hash,
    rotation_place,
    rotations_to_defer,
    with_secrets,
)
from noderuntime.runtime.base import LABEL_SPEC_HASH, ContainerSpec
from noderuntime.runtime.fake import FakeRuntime, ManualClock
from noderuntime.spec.models import SECRET_ENV_DIR, canonical_dict
from noderuntime.spec.parse import workload_from_dict
from tests.unit.reconciler_harness import IMAGE, NODE, START, harness, workload
from tests.unit.test_api_routes import CannedLogs, FakeReconciler, FakeServices, call

VALUE = b"s3cret-value-\x00\xff"


def _doc(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "noderuntime/v1",
        "kind": "Workload",
        "metadata": {"name": "app"},
        "spec": {"image": "busybox", **spec},
    }


# --- sealing --------------------------------------------------------------------------------


def test_a_box_opens_only_for_its_node_name_and_version() -> None:
    mine, other = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    box = seal(VALUE, public_raw(mine), name="db", node_id="n1", version=2)
    assert open_sealed(box, mine, name="db", node_id="n1", version=2) == VALUE
    assert VALUE not in box.ct
    for key, name, node, version in (
        (other, "db", "n1", 2),  # another node's key
        (mine, "web", "n1", 2),  # copied under another name
        (mine, "db", "n2", 2),  # claimed for another node
        (mine, "db", "n1", 1),  # replayed as another version
    ):
        with pytest.raises(SecretError):
            open_sealed(box, key, name=name, node_id=node, version=version)
    tampered = Sealed(box.epk, box.ct[:-1] + bytes([box.ct[-1] ^ 1]))
    with pytest.raises(SecretError):
        open_sealed(tampered, mine, name="db", node_id="n1", version=2)
    assert Sealed.from_wire(box.to_wire()) == box


def test_two_seals_of_one_value_differ() -> None:
    key = public_raw(X25519PrivateKey.generate())
    a = seal(VALUE, key, name="db", node_id="n1", version=1)
    b = seal(VALUE, key, name="db", node_id="n1", version=1)
    assert a.epk != b.epk and a.ct != b.ct


def test_the_seal_key_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "seal.key"
    first = load_or_create_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert public_raw(load_or_create_key(path)) == public_raw(first)


# --- the spec -------------------------------------------------------------------------------


def test_spec_secrets_as_file_and_env() -> None:
    w = workload_from_dict(
        _doc(
            {
                "command": ["sh", "-c", "sleep 1"],
                "secrets": [{"name": "db", "path": "/run/secrets/db"}, {"name": "db", "env": "PW"}],
            }
        )
    )
    assert [(r.name, r.path, r.env) for r in w.spec.secrets or []] == [
        ("db", "/run/secrets/db", None),
        ("db", None, "PW"),
    ]


def test_a_spec_without_secrets_keeps_its_stored_form() -> None:
    w = workload_from_dict(_doc({"secrets": []}))
    assert "secrets" not in canonical_dict(w)["spec"]


@pytest.mark.parametrize(
    ("secrets", "extra", "words"),
    [
        ([{"name": "db"}], {}, "exactly one of path"),
        ([{"name": "db", "path": "/a", "env": "A"}], {}, "exactly one of path"),
        ([{"name": "db", "env": "PW"}], {}, "needs spec.command"),
        ([{"name": "a", "path": "/x"}, {"name": "b", "path": "/x"}], {}, "already used"),
        ([{"name": "Bad_Name", "path": "/x"}], {}, "invalid name"),
        ([{"name": "db", "path": "relative"}], {}, "absolute"),
        ([{"name": "db", "path": SECRET_ENV_DIR}], {}, "cannot mount a secret there"),
        (
            [{"name": "db", "env": "PW"}],
            {"command": ["sh"], "env": {"PW": "x"}},
            "also set in spec.env",
        ),
    ],
)
def test_spec_secrets_refused(secrets: list[Any], extra: dict[str, Any], words: str) -> None:
    with pytest.raises(SpecError) as err:
        workload_from_dict(_doc({"secrets": secrets, **extra}))
    assert words in str(err.value)


# --- which boxes a container needs ----------------------------------------------------------


def _record(
    keys: dict[str, X25519PrivateKey], value: bytes = VALUE, version: int = 1
) -> dict[str, Any]:
    return {
        "v": 1,
        "version": version,
        "sealed": {
            node: seal(value, public_raw(k), name="db", node_id=node, version=version).to_wire()
            for node, k in keys.items()
        },
        "targets": {"nodes": sorted(keys)},
        "by": "operator:alice",
        "at": 1.0,
        "size": len(value),
    }


def test_mounts_name_the_boxes_and_refuse_a_node_that_is_no_target() -> None:
    k1, k2 = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    w = workload_from_dict(_doc({"secrets": [{"name": "db", "path": "/run/secrets/db"}]}))
    secrets = {"db": _record({"n1": k1})}
    mine = mounts_for(w, secrets, "n1")
    assert mine is not None and mine.problem is None and len(mine.files) == 1
    theirs = mounts_for(w, secrets, "n2")
    assert theirs is not None and theirs.files == ()
    assert theirs.problem is not None and "not sealed for node n2" in theirs.problem
    missing = mounts_for(w, {}, "n1")
    assert missing is not None and missing.problem is not None
    assert "does not exist" in missing.problem
    # Adding another target leaves n1's digest alone; resealing for n1 changes it.
    both = mounts_for(
        w,
        {
            "db": {
                **secrets["db"],
                "sealed": _record({"n1": k1, "n2": k2})["sealed"]
                | {"n1": secrets["db"]["sealed"]["n1"]},
            }
        },
        "n1",
    )
    assert both is not None and both.digest == mine.digest
    again = mounts_for(w, {"db": _record({"n1": k1}, version=2)}, "n1")
    assert again is not None and again.digest != mine.digest
    assert mounts_for(workload_from_dict(_doc({})), secrets, "n1") is None


def test_with_secrets_binds_files_read_only_and_wraps_env() -> None:
    w = workload_from_dict(
        _doc(
            {
                "command": ["app", "--serve"],
                "args": ["x"],
                "secrets": [{"name": "db", "path": "/run/secrets/db"}, {"name": "db", "env": "PW"}],
            }
        )
    )
    mounts = mounts_for(w, {"db": _record({"n1": X25519PrivateKey.generate()})}, "n1")
    assert mounts is not None
    base = ContainerSpec(
        name="c",
        image="busybox",
        command=("app", "--serve"),
        args=("x",),
        labels=((LABEL_SPEC_HASH, "abc"),),
    )
    out = with_secrets(base, w, mounts, "/tmpfs/app.d")
    binds = {v.target: (v.source, v.read_only, v.kind) for v in out.volumes}
    assert binds["/run/secrets/db"] == ("/tmpfs/app.d/file0", True, "bind")
    assert binds[SECRET_ENV_DIR] == ("/tmpfs/app.d/env", True, "bind")
    assert out.command[:2] == ("/bin/sh", "-c") and out.args == ("app", "--serve", "x")
    assert dict(out.labels)[LABEL_SPEC_HASH] == f"abc+{mounts.digest}"
    assert plain_hash(dict(out.labels)[LABEL_SPEC_HASH]) == "abc"
    assert all(VALUE.decode(errors="ignore") not in str(x) for x in (out.env, out.command))


def test_targets_by_node_site_and_labels() -> None:
    held = [
        ("a", {"site": "s1", "labels": {"gpu": "yes"}, "sealKey": "K"}),
        ("b", {"site": "s2", "labels": {}}),
        ("c", {"site": "s3", "labels": {"gpu": "yes", "zone": "z"}}),
    ]
    assert [t.node_id for t in match_targets(held, node_ids=["b"])] == ["b"]
    assert [t.node_id for t in match_targets(held, sites=["s1", "s2"])] == ["a", "b"]
    got = match_targets(held, labels={"gpu": "yes", "zone": "z"})
    assert [t.node_id for t in got] == ["c"]
    assert match_targets(held, node_ids=["a"])[0].seal_key == "K"
    assert match_targets(held) == []


def test_check_record_refuses_stale_plain_or_odd_records() -> None:
    good = _record({"n1": X25519PrivateKey.generate()}, version=2)
    check_record(good, previous=1)
    with pytest.raises(SecretError, match="changed meanwhile"):
        check_record(good, previous=2)
    with pytest.raises(SecretError, match="epk and ct only"):
        check_record({**good, "sealed": {"n1": {"value": "plain"}}}, previous=0)
    with pytest.raises(SecretError, match="unknown fields"):
        check_record({**good, "value": "plain"}, previous=0)
    with pytest.raises(SecretError, match="at least one node"):
        check_record({**good, "sealed": {}}, previous=0)


def test_build_record_seals_for_every_target_or_refuses() -> None:
    k1, k2 = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    reply = {
        "version": 3,
        "targets": [
            {"node": "n1", "sealKey": public_key_text(public_raw(k1))},
            {"node": "n2", "sealKey": public_key_text(public_raw(k2))},
        ],
    }
    rec = build_record("db", VALUE, reply, by="operator:a", selector={}, now=5.0)
    assert rec["version"] == 3 and sorted(rec["sealed"]) == ["n1", "n2"]
    box = Sealed.from_wire(rec["sealed"]["n2"])
    assert open_sealed(box, k2, name="db", node_id="n2", version=3) == VALUE
    assert VALUE.hex() not in json.dumps(rec) and "s3cret" not in json.dumps(rec)
    with pytest.raises(InvalidInputError, match="no sealing key"):
        build_record(
            "db", VALUE, {"version": 1, "targets": [{"node": "n1"}]}, by="x", selector={}, now=0
        )
    with pytest.raises(InvalidInputError, match="holds no node"):
        build_record("db", VALUE, {"version": 1, "unknown": ["zz"]}, by="x", selector={}, now=0)
    with pytest.raises(InvalidInputError, match="no node"):
        build_record("db", VALUE, {"version": 1, "targets": []}, by="x", selector={}, now=0)


# --- the reconciler -------------------------------------------------------------------------


class MemorySecretFiles:
    """SecretFiles in memory, opening boxes with a real key (as the tmpfs writer does)."""

    def __init__(self, key: X25519PrivateKey) -> None:
        self.key = key
        self.dirs: dict[str, dict[str, bytes]] = {}
        self.opened = 0

    def host_dir(self, key: str) -> str:
        return f"/tmpfs/{key}"

    def present(self, key: str) -> bool:
        return key in self.dirs

    def write(self, key: str, files: Sequence[SecretFile], owner: str | None) -> None:
        self.opened += 1
        self.dirs[key] = {
            f.relpath: open_sealed(
                Sealed.from_wire(dict(f.sealed)),
                self.key,
                name=f.name,
                node_id=NODE,
                version=f.version,
            )
            for f in files
        }

    def sweep(self, keep: set[str]) -> None:
        for key in set(self.dirs) - keep:
            del self.dirs[key]


async def _set(h: Any, record: dict[str, Any]) -> None:
    await h.state.write(
        h.state.fleet_doc, lambda d: schema.put_entry(d, schema.SECRETS, "db", record)
    )


async def test_a_workload_gets_its_secret_and_rotation_replaces_the_container() -> None:
    key = X25519PrivateKey.generate()
    files = MemorySecretFiles(key)
    audit = MemoryAudit()
    async with harness(secret_files=files, audit=audit) as h:
        await _set(h, _record({NODE: key}, b"one"))
        await h.apply(workload("app", secrets=[{"name": "db", "path": "/run/secrets/db"}]))
        await h.settle()
        assert h.status("app").phase == "Running"
        (c,) = h.runtime.containers.values()
        assert list(files.dirs.values()) == [{"file0": b"one"}]
        assert h.status("app").spec_hash == plain_hash(dict(c.spec.labels)[LABEL_SPEC_HASH])
        assert "one" not in json.dumps(schema.export_doc(h.state._durable[h.state.node_doc]))

        await _set(h, _record({NODE: key}, b"two", version=2))
        await h.settle()
        (c2,) = h.runtime.containers.values()
        assert c2.id != c.id and h.status("app").phase == "Running"
        assert list(files.dirs.values()) == [{"file0": b"two"}]  # the old dir was swept
    opened = audit.of(AuditKind.SECRET_DECRYPTED)
    assert [(e["workload"], e["secrets"], e["container"]) for e in opened] == [
        ("app", [("db", 1)], "create"),
        ("app", [("db", 2)], "create"),
    ]
    assert "one" not in repr(opened) and "two" not in repr(opened)


async def test_rotation_waits_for_this_nodes_turn_in_its_site() -> None:
    key, ahead = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    files = MemorySecretFiles(key)
    async with harness(secret_files=files) as h:
        await _set(h, _record({NODE: key, "m0": ahead}, b"one"))  # m0 sorts before n1
        await h.apply(workload("app", secrets=[{"name": "db", "path": "/run/secrets/db"}]))
        await h.settle()
        (c,) = h.runtime.containers.values()

        await _set(h, _record({NODE: key, "m0": ahead}, b"two", version=2))
        await h.settle()
        assert [x.id for x in h.runtime.containers.values()] == [c.id]  # m0's turn first
        assert list(files.dirs.values()) == [{"file0": b"one"}]  # its files stay meanwhile
        assert 0 < await h.tick() <= ROTATION_SLOT_S
        h.clock.advance(ROTATION_SLOT_S)
        await h.tick()
        await h.settle()
        (c2,) = h.runtime.containers.values()
        assert c2.id != c.id and list(files.dirs.values()) == [{"file0": b"two"}]


def test_rotation_order_is_by_node_id_within_a_site_and_bounded() -> None:
    record = {"sealed": {"a": {}, "b": {}, "c": {}, "d": {}}, "sites": {"a": "x", "b": "y"}}
    record["sites"].update(c="x", d="x")
    assert [rotation_place(record, n, "x") for n in ("a", "c", "d")] == [0, 1, 2]
    assert rotation_place(record, "b", "y") == 0  # alone in its site: no wait
    assert rotation_place({"sealed": {"a": {}, "b": {}}}, "b", "x") == 1  # no sites: all one

    mounts = SecretMounts("new", (SecretFile("db", 2, {}, "file0"),))
    seen = note_versions({("db", 1): 0.0}, {"db": {**record, "version": 2}}, now=100.0)
    assert seen == {("db", 2): 100.0}

    def defer(node: str, now: float, running: str = "h+old") -> dict[str, Deferred]:
        return rotations_to_defer(
            {"app": "h+new"},
            {"app": mounts},
            {"app": running},
            {"db": {**record, "version": 2}},
            seen,
            node_id=node,
            site="x",
            now=now,
            slot_s=10.0,
        )

    assert defer("a", 100.0) == {}  # first in order: at once
    assert defer("d", 100.0) == {"app": Deferred("h+old", 20.0)}
    assert defer("d", 115.0) == {"app": Deferred("h+old", 5.0)}
    assert defer("d", 120.0) == {}  # its slot came, whatever the others did
    assert defer("d", 100.0, running="h2+old") == {}  # a spec change is not held back


async def test_a_node_that_is_no_target_shows_pending() -> None:
    files = MemorySecretFiles(X25519PrivateKey.generate())
    async with harness(secret_files=files) as h:
        await _set(h, _record({"other": X25519PrivateKey.generate()}))
        await h.apply(workload("app", secrets=[{"name": "db", "path": "/run/secrets/db"}]))
        await h.settle()
        st = h.status("app")
        assert st.phase == "Pending"
        assert f"not sealed for node {NODE}" in st.message
        assert h.runtime.containers == {} and files.opened == 0


async def test_a_box_sealed_to_another_key_is_refused_at_create() -> None:
    files = MemorySecretFiles(X25519PrivateKey.generate())  # not the key it was sealed to
    async with harness(secret_files=files) as h:
        await _set(h, _record({NODE: X25519PrivateKey.generate()}))
        await h.apply(workload("app", secrets=[{"name": "db", "path": "/run/secrets/db"}]))
        await h.settle()
        assert h.status("app").phase == "Pending"
        assert "not sealed to this node's key" in h.status("app").message
        assert h.runtime.containers == {}


def test_a_hubs_own_key_may_not_write_a_secret() -> None:
    before: dict[str, dict[str, Any]] = {}
    after = {schema.SECRETS: {"db": json.dumps(_record({"n1": X25519PrivateKey.generate()}))}}
    problem = schema.relay_problem(before, after)
    assert problem is not None and "operator only" in problem


# --- the routes -----------------------------------------------------------------------------


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[FakeServices]:
    ident = keys.generate("node:n1")
    async with StateStore(MemoryStore(), ident, node_id="n1", site="s1") as state:
        facts = NodeFacts("n1", "s1", "node", 0.0, tmp_path, tmp_path / "api.sock", Path("/p"))
        yield FakeServices(facts, state, FakeReconciler(state), CannedLogs([]))


async def test_secret_routes_store_boxes_list_no_box_and_refuse_stale_sets(
    svc: FakeServices,
) -> None:
    key = X25519PrivateKey.generate()
    await svc.state.write(
        svc.state.node_doc,
        lambda d: schema.put_info(
            d, {"nodeId": "n1", "site": "s1", "sealKey": public_key_text(public_raw(key))}
        ),
    )
    reply = await call(svc, "secret.targets", name="db", sites=["s1"])
    assert reply["version"] == 1 and [t["node"] for t in reply["targets"]] == ["n1"]
    record = build_record("db", VALUE, reply, by="node", selector={}, now=1.0)
    assert (await call(svc, "secret.set", name="db", record=record))["nodes"] == ["n1"]
    (row,) = await call(svc, "secret.ls")
    assert row["name"] == "db" and row["version"] == 1 and row["nodes"] == ["n1"]
    assert "sealed" not in row and "ct" not in json.dumps(row)
    with pytest.raises(ApiError, match="changed meanwhile"):
        await call(svc, "secret.set", name="db", record=record)
    with pytest.raises(ApiError, match="invalid secret name"):
        await call(svc, "secret.targets", name="Bad Name")
    await call(svc, "secret.rm", name="db")
    assert await call(svc, "secret.ls") == []


async def test_after_a_node_restart_a_crashed_container_gets_its_secret_written_again() -> None:
    clock = ManualClock(START)
    runtime = FakeRuntime(clock=clock, images=[IMAGE])
    store = MemoryStore()
    key = X25519PrivateKey.generate()
    app = workload("app", secrets=[{"name": "db", "path": "/run/secrets/db"}])
    async with harness(runtime=runtime, store=store, clock=clock, secret_files=None) as h:
        await _set(h, _record({NODE: key}, b"one"))
        await h.apply(app)
    # The first node had no tmpfs: Pending. The restarted one has an empty tmpfs.
    files = MemorySecretFiles(key)
    async with harness(runtime=runtime, store=store, clock=clock, secret_files=files) as h:
        clock.advance(60)
        await h.settle()
        await h.tick()
        first = h.runtime.running("app").id
        assert files.opened == 1
    files = MemorySecretFiles(key)  # the node restarted again: its tmpfs is empty
    async with harness(runtime=runtime, store=store, clock=clock, secret_files=files) as h:
        await h.settle()
        assert files.opened == 0  # adopted as it runs: nothing opened
        runtime.die("app")
        clock.advance(5)
        await h.tick()
        await h.settle()
        assert h.runtime.running("app").id == first  # started again, not re-created
        assert files.opened == 1 and list(files.dirs.values()) == [{"file0": b"one"}]
