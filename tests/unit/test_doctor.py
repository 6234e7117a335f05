"""The doctor's fixes, applied to temporary files (no host changes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ipabuild import doctor


@pytest.fixture
def subid_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    subuid, subgid = tmp_path / "subuid", tmp_path / "subgid"
    subuid.write_text("alice:100000:65536")  # no trailing newline on purpose
    monkeypatch.setattr(doctor, "SUBID_FILES", (subuid, subgid))
    return subuid, subgid


def test_subids_reported_then_fixed(subid_files: tuple[Path, Path]) -> None:
    before = doctor.check_subids(fix=False)
    assert not before.ok and "containers" in before.fix
    fixed = doctor.check_subids(fix=True)
    assert fixed.ok and fixed.fixed
    subuid, subgid = subid_files
    assert subuid.read_text() == "alice:100000:65536\n" + doctor.SUBID_RANGE + "\n"
    assert subgid.read_text() == doctor.SUBID_RANGE + "\n"
    again = doctor.check_subids(fix=True)
    assert again.ok and not again.fixed


def test_containers_conf_dropin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor, "CONF_DROPIN", tmp_path / "conf.d" / "50-ipabuild.conf")
    assert not doctor.check_containers_conf(fix=False).ok
    assert doctor.check_containers_conf(fix=True).fixed
    text = doctor.CONF_DROPIN.read_text()
    assert 'runtime = "runc"' in text and "nproc=4096:4096" in text
    assert doctor.check_containers_conf(fix=False).ok


def test_ulimits_never_exceed_hard_limits() -> None:
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    files = int(doctor.desired_ulimits()["nofile"].split(":")[1])
    assert hard == resource.RLIM_INFINITY or files <= hard
