"""Host setup derives Podman's settings from host facts; a normal host gets none."""

from __future__ import annotations

from pathlib import Path

from noderuntime.host.doctor import Status, check_host_config
from noderuntime.host.hostsetup import (
    HostFacts,
    apply_fixes,
    cgroup_layout,
    needed_fixes,
    render_dropin,
)

NORMAL = HostFacts(
    "v2", nofile_hard=1_048_576, nproc_hard=4_194_304, cap_sys_resource=True, runc_installed=False
)
THIS_KIND = HostFacts(
    "hybrid", nofile_hard=20_000, nproc_hard=63_000, cap_sys_resource=False, runc_installed=True
)


def test_a_normal_cgroup_v2_host_needs_nothing() -> None:
    assert needed_fixes(NORMAL) == []


def test_hybrid_host_without_cap_sys_resource_gets_runc_and_safe_ulimits() -> None:
    fixes = {f.key: f.value for f in needed_fixes(THIS_KIND)}
    assert fixes == {
        "default_ulimits": '["nofile=1024:1024", "nproc=1000:1000"]',
        "runtime": '"runc"',
    }
    text = render_dropin(needed_fixes(THIS_KIND))
    assert "[containers]" in text and "[engine]" in text


def test_ulimits_never_exceed_a_tiny_hard_limit() -> None:
    tiny = HostFacts(
        "v2", nofile_hard=512, nproc_hard=100, cap_sys_resource=False, runc_installed=True
    )
    (fix,) = needed_fixes(tiny)
    assert fix.value == '["nofile=512:512", "nproc=100:100"]'


def test_capability_makes_the_limits_unnecessary() -> None:
    facts = HostFacts("hybrid", 20_000, 63_000, cap_sys_resource=True, runc_installed=True)
    assert [f.key for f in needed_fixes(facts)] == ["runtime"]


def test_apply_writes_and_removes_the_dropin(tmp_path: Path) -> None:
    path = apply_fixes(needed_fixes(THIS_KIND), base=tmp_path)
    assert path is not None and path.read_text() == render_dropin(needed_fixes(THIS_KIND))
    assert apply_fixes([], base=tmp_path) is None
    assert not path.exists()


def test_cgroup_layout_detection(tmp_path: Path) -> None:
    assert cgroup_layout(tmp_path) == "v1"
    (tmp_path / "unified").mkdir()
    assert cgroup_layout(tmp_path) == "hybrid"
    (tmp_path / "cgroup.controllers").write_text("cpu memory\n")
    assert cgroup_layout(tmp_path) == "v2"


def test_doctor_reports_a_needed_fix_with_the_command(tmp_path: Path) -> None:
    assert check_host_config(NORMAL, tmp_path).status is Status.OK
    check = check_host_config(THIS_KIND, tmp_path)
    assert check.status is Status.FAIL
    assert "doctor --fix" in check.fix
    apply_fixes(needed_fixes(THIS_KIND), base=tmp_path)
    assert check_host_config(THIS_KIND, tmp_path).status is Status.OK
