"""Property: a spec either fails validation with SpecError, or every conversion after it works.

Issue 9 §2: `cpus: 1.0e+308` validated, then building the container body raised OverflowError
on every reconcile pass. Generated specs, with extreme numbers, long strings and unicode, go
through validation (as JSON from the store and as YAML from a user) and, when they validate,
through everything the node does with them: canonical form, hash, round trip, container spec,
Podman's create body and the probe.
"""

from __future__ import annotations

import json
import math
from typing import Any

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from noderuntime.errors import SpecError
from noderuntime.reconcile.container_spec import to_container_spec, to_probe_spec
from noderuntime.runtime.podman import create_body
from noderuntime.spec.models import Workload, canonical_dict, spec_hash
from noderuntime.spec.parse import parse_workloads, workload_from_dict

INT64_MAX = 2**63 - 1


def _field_repro(resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "noderuntime/v1",
        "kind": "Workload",
        "metadata": {"name": "web"},
        "spec": {"image": "x", "resources": resources},
    }


# The two values found in the field (issue 9 §2), always tried first.
FIELD_REPROS = [
    _field_repro({"cpus": 1.0e308}),
    _field_repro({"memory": "999999999999999999999999Ti"}),
]

# Numbers around every bound and far beyond, in every type a parser may hand over.
_EDGES = [0, 1, -1, 3, 1024, 1025, 3600, 3601, 65535, 65536, 2**31, 2**53 + 1, 2**60, 2**62]
_EDGES += [2**63, 2**64, 10**30, 10**400]
numbers = st.one_of(
    st.sampled_from(_EDGES),
    st.sampled_from(_EDGES).map(lambda n: -n),
    st.integers(),
    st.floats(),  # nan, inf, subnormals, 1e308
    st.sampled_from([0.001, 0.5, 1.0e308, 1024.0000001, 2.0**60, 1e-300]),
)
units = st.sampled_from(
    ["", "k", "M", "G", "Ei", "Ki", "Mi", "Gi", "Ti", "Pi", "m", "ms", "s", "h"]
)
digits = st.from_regex(r"[0-9]{1,60}(\.[0-9]{0,30})?", fullmatch=True)
quantities = st.builds(lambda n, u: f"{n}{u}", digits, units)
texts = st.one_of(
    st.text(max_size=30),
    st.text(st.characters(codec="utf-8"), min_size=200, max_size=2000),
    st.sampled_from(["web", "web\n", "x\0y", "\u0663", "\u00b2", "/", "/a/../b", "1:2", ""]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, quantities, texts)
anything = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=6,
)


def documents(wild: bool) -> st.SearchStrategy[dict[str, Any]]:
    """Workload documents. Tame: values in range up to every bound, and texts of any unicode.
    Wild: besides, any field may hold anything, and numbers go far past every bound."""

    def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        if not wild:
            return strategy
        return st.integers(0, 7).flatmap(lambda i: anything if i == 0 else strategy)

    def near(low: float, high: float, integer: bool = False) -> st.SearchStrategy[Any]:
        inside = st.integers(int(low), int(high)) if integer else st.floats(low, high)
        tame = st.one_of(inside, st.sampled_from([low, high]))
        return st.one_of(tame, tame, numbers) if wild else tame

    def fields(
        required: dict[str, st.SearchStrategy[Any]] | None = None, **optional: Any
    ) -> st.SearchStrategy[dict[str, Any]]:
        return st.fixed_dictionaries(
            {k: maybe(v) for k, v in (required or {}).items()},
            optional={k: maybe(v) for k, v in optional.items()},
        )

    text = texts if wild else st.text(st.characters(codec="utf-8", exclude_characters="\0"))
    port = near(1, 65535, integer=True)
    short_port = st.builds(
        lambda ip, h, c, proto: f"{ip}{h}:{c}{proto}",
        st.sampled_from(["", "127.0.0.1:", "[::1]:"]),
        st.one_of(port, texts) if wild else port,
        port,
        st.sampled_from(["", "/tcp", "/udp"]),
    )
    port_object = fields(
        {"containerPort": port},
        hostPort=port,
        protocol=st.sampled_from(["tcp", "udp"]),
        hostIP=st.sampled_from(["", "127.0.0.1", "::1", "fe80::1%eth0"]),
    )
    path = st.one_of(
        st.sampled_from(["/data", "/data/", "/srv", "/a/../b"]),
        st.from_regex(r"/[a-z]{1,8}", fullmatch=True),
        text.map(lambda t: "/" + t),
    )
    named = st.fixed_dictionaries({"name": st.from_regex(r"[a-z][a-z0-9_.-]{0,8}", fullmatch=True)})
    bind = st.fixed_dictionaries({"hostPath": path})
    volume = st.builds(
        lambda source, mount, ro: {**source, "mountPath": mount, "readOnly": ro},
        st.one_of(named, bind) if not wild else fields(name=text, hostPath=path),
        path,
        st.booleans(),
    )
    duration = st.one_of(near(1, 86400), st.sampled_from(["1m30s", "24h", "86400", "2.5"]))
    memory = st.one_of(
        near(6 * 2**20, 2**60, integer=True),
        st.builds(lambda n, u: f"{n}{u}", st.integers(6, 1023), st.sampled_from(["Mi", "Gi", "M"])),
        st.sampled_from(["1Ei", "1024Pi", "1152921504606846976"]),
    )
    if wild:
        duration, memory = duration | quantities, memory | quantities
    probe = st.one_of(
        st.fixed_dictionaries(
            {"exec": fields({"command": st.lists(text, min_size=1, max_size=3)})}
        ),
        st.fixed_dictionaries(
            {
                "http": fields(
                    {"port": port},
                    path=st.from_regex(r"/[!-~]{0,20}", fullmatch=True),
                    scheme=st.sampled_from(["http", "https"]),
                )
            }
        ),
        st.fixed_dictionaries({"tcp": fields({"port": port})}),
    )
    health_check = st.builds(
        lambda kind, timing: {**kind, **timing},
        probe if not wild else fields(exec=anything, http=anything, tcp=anything) | probe,
        fields(
            interval=duration,
            timeout=duration,
            startPeriod=duration,
            retries=near(1, 1000, integer=True),
        ),
    )
    label_key = st.from_regex(r"[A-Za-z0-9]{1,8}", fullmatch=True)
    label_value = st.from_regex(r"[A-Za-z0-9]{0,8}", fullmatch=True)
    if wild:
        label_key, label_value = label_key | texts, label_value | texts
    env_name = st.from_regex(r"[A-Z_][A-Z0-9_]{0,8}", fullmatch=True)
    argv = st.lists(st.one_of(text, numbers if wild else st.integers()), max_size=3)
    spec = fields(
        {"image": st.sampled_from(["localhost/busybox:1", "x"])},
        command=argv,
        args=argv,
        env=st.dictionaries(env_name, st.one_of(text, st.integers(), st.floats()), max_size=3),
        ports=st.lists(st.one_of(port, short_port, port_object), max_size=3),
        volumes=st.lists(volume, max_size=3),
        restartPolicy=st.sampled_from(["always", "OnFailure", "never", "Always"]),
        healthCheck=health_check,
        resources=fields(
            cpus=near(0.001, 1024),
            memory=memory,
        ),
        nodeSelector=st.dictionaries(label_key, label_value, max_size=2),
        workingDir=path,
        user=st.sampled_from(["1000", "1000:1000", "nobody"]) | (texts if wild else st.nothing()),
        stopTimeoutSeconds=near(0, 3600, integer=True),
    )
    return st.fixed_dictionaries(
        {
            "apiVersion": st.just("noderuntime/v1"),
            "kind": st.just("Workload"),
            "metadata": fields(
                {"name": st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True)},
                labels=st.dictionaries(label_key, label_value, max_size=2),
            ),
            "spec": spec,
        }
    )


def _ints(value: Any) -> list[int]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, dict):
        return [i for v in value.values() for i in _ints(v)]
    if isinstance(value, list):
        return [i for v in value for i in _ints(v)]
    return []


def _everything_after_validation(w: Workload) -> None:
    canonical = canonical_dict(w)
    json.dumps(canonical, allow_nan=False)  # the stored form
    assert workload_from_dict(canonical) == w
    assert len(spec_hash(w)) == 16
    body = create_body(to_container_spec(w, node_id="n1", container_name="nr-n1-web"))
    json.dumps(body, allow_nan=False)
    assert all(-INT64_MAX <= i <= INT64_MAX for i in _ints(body)), body
    memory = body.get("resource_limits", {}).get("memory", {}).get("limit")
    assert memory is None or 2 * memory <= INT64_MAX  # Podman doubles it for swap
    probe = to_probe_spec(w)
    if probe is not None:
        assert math.isfinite(probe.interval_s) and probe.interval_s <= 86400
        assert 0 < probe.timeout_s <= probe.interval_s
        assert 0 <= probe.start_period_s <= 86400 and 1 <= probe.retries <= 1000


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(documents(wild=False) | documents(wild=True))
@example(FIELD_REPROS[0])
@example(FIELD_REPROS[1])
def test_stored_json_specs_either_fail_validation_or_convert(doc: dict[str, Any]) -> None:
    try:
        w = workload_from_dict(doc)
    except SpecError as exc:
        assert exc.problems
        return
    _everything_after_validation(w)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(documents(wild=False) | documents(wild=True))
@example(FIELD_REPROS[0])
@example(FIELD_REPROS[1])
def test_yaml_specs_either_fail_validation_or_convert(doc: dict[str, Any]) -> None:
    try:
        text = yaml.safe_dump(doc, allow_unicode=True)
    except (yaml.YAMLError, ValueError):
        return  # PyYAML cannot write every Python value; not a spec question
    try:
        (w,) = parse_workloads(text, "gen.yaml")
    except SpecError as exc:
        assert exc.problems
        assert all(p.line is not None for p in exc.problems), exc
        return
    _everything_after_validation(w)


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.sampled_from(
        [
            "  resources: {cpus: %s}",
            "  resources: {memory: %s}",
            "  stopTimeoutSeconds: %s",
            "  ports: [%s]",
            "  healthCheck: {tcp: {port: 80}, retries: %s}",
            "  healthCheck: {tcp: {port: %s}, interval: %s}",
            "  env: {%s: x}",
        ]
    ),
    st.builds(
        lambda sign, head, length, tail: sign + head + "0" * length + tail,
        st.sampled_from(["", "-", "+"]),
        st.from_regex(r"[1-9][0-9]{0,20}", fullmatch=True),
        # Python's int() refuses more than 4300 digits with a bare ValueError.
        st.sampled_from([0, 0, 1, 5, 80, 300, 4300, 5000]),
        st.from_regex(r"(\.[0-9]{0,40})?([eE][+-]?[0-9]{1,4})?", fullmatch=True),
    ),
)
def test_number_literals_of_any_length_are_spec_errors_or_valid(line: str, number: str) -> None:
    text = (
        "apiVersion: noderuntime/v1\nkind: Workload\nmetadata: {name: web}\n"
        "spec:\n  image: x\n" + line.replace("%s", number) + "\n"
    )
    try:
        (w,) = parse_workloads(text, "gen.yaml")
    except SpecError as exc:
        assert all(p.line == 6 for p in exc.problems), exc
        return
    _everything_after_validation(w)
