"""The on-demand podman API service: one left in a deleted directory is found (it answers
pings but cannot start containers), a healthy one is left alone."""

from __future__ import annotations

from pathlib import Path

from ipabuild.podman_api import URL, stale_services


def _process(proc: Path, pid: int, argv: list[str], cwd: str) -> None:
    entry = proc / str(pid)
    entry.mkdir()
    (entry / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (entry / "cwd").symlink_to(cwd)


def test_a_service_in_a_deleted_directory_is_stale(tmp_path: Path) -> None:
    service = ["podman", "system", "service", "--time=0", URL]
    _process(tmp_path, 101, service, "/work/wt-ranges (deleted)")
    _process(tmp_path, 102, service, "/")
    _process(tmp_path, 103, ["bash"], "/tmp/gone (deleted)")
    _process(tmp_path, 104, ["podman", "system", "service", "unix:///other.sock"],
             "/x (deleted)")
    assert stale_services(tmp_path) == [101]
