"""Host ID ranges allocated, not hashed, proven on real containers: two stacks whose
names collided under the old hash come up at the same time on disjoint ranges (and
``verify`` proves it from their uid_maps), a ``--userns=auto`` container of another tool
is never overlapped, and a second ``up`` of a stack being started fails at once naming
the holder's PID.

Lean on purpose: only ldap starts, in its own user namespace (a copy of the project
whose ldap spec gains a root init step that chowns its volumes, so the stack needs a
namespace range as the CA and the monolith do). Nothing is built: the test uses the
images in local storage (``ipabuild images`` makes them) and skips when they are
missing. ``IPABUILD_TEST_ROOT`` names the project whose specs to copy (default: this
checkout); the registry lives in a temporary ``IPABUILD_STATE_DIR``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from ipabuild.core.hostids import USERNS_SIZE, legacy_uid, legacy_userns_base
from ipabuild.stack.idranges import UID_POOL
from tests.integration.conftest import ROOT, ipabuild
from tests.integration.podman_cli import sh

SPECS = Path(os.environ.get("IPABUILD_TEST_ROOT") or ROOT)
IMAGE = "localhost/ipabuild/ldap:latest"


def _outside(pid: int, kind: str) -> list[tuple[int, int]]:
    rows = Path(f"/proc/{pid}/{kind}").read_text().split("\n")
    return [(int(r.split()[1]), int(r.split()[2])) for r in rows if r.strip()]


def _pid(container: str) -> int:
    return int(sh(["podman", "inspect", container, "--format", "{{.State.Pid}}"]).stdout.strip())


def _disjoint(first: list[tuple[int, int]], second: list[tuple[int, int]]) -> bool:
    return all(a + n <= b or b + m <= a for a, n in first for b, m in second)


def _colliding_names() -> tuple[str, str]:
    """Two fresh names with the same range under the old hash (birthday: ~40 tries)."""
    tag, seen = uuid.uuid4().hex[:4], {}
    for i in range(5000):
        name = f"rng{tag}{i}"
        base = legacy_userns_base(name)
        if base in seen:
            return seen[base], name
        seen[base] = name
    raise AssertionError("no colliding pair found")


@pytest.fixture
def plain_root(built: dict[str, dict], tmp_path: Path,
               monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the project as it is (ldap a split service), with a registry of its own."""
    assert subprocess.run(["podman", "image", "exists", IMAGE], check=False).returncode == 0
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(SPECS / "ipabuild.yaml", root)
    shutil.copytree(SPECS / "services", root / "services")
    monkeypatch.setenv("IPABUILD_STATE_DIR", str(tmp_path / "state"))
    return root


@pytest.fixture
def userns_root(plain_root: Path) -> Path:
    """The project copy with ldap in a user namespace of its own (a root init step)."""
    spec_path = plain_root / "services" / "ldap" / "service.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    paths = " ".join(v["path"] for v in spec["volumes"])
    spec["init"] = {"command": ["/bin/sh", "-c", f"chown -R {spec['user']}:0 {paths}"],
                    "root_in_user_namespace": True, "reason": "test: needs a namespace range"}
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return plain_root


@pytest.fixture
def foreign() -> Iterator[str]:
    """Another tool's container, in a namespace podman picked (--userns=auto)."""
    name = f"rngforeign{uuid.uuid4().hex[:6]}"
    sh(["podman", "run", "-d", "--name", name, "--userns=auto", "--entrypoint", "sleep",
        IMAGE, "900"])
    try:
        yield name
    finally:
        # -v: the anonymous volumes of the image's VOLUMEs go too
        subprocess.run(["podman", "rm", "-f", "-v", "-t", "0", name], capture_output=True,
                       check=False)


def _up(root: Path, name: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "ipabuild.cli", "--root", str(root), "up",
                             "--name", name, "--service", "ldap"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_holder(state: Path, name: str, timeout: float = 30) -> None:
    lock = state / "locks" / f"stack-{name}.lock"
    deadline = time.monotonic() + timeout
    while not (lock.exists() and lock.read_text().strip()):
        assert time.monotonic() < deadline, f"{lock} never held"
        time.sleep(0.1)


def test_colliding_names_come_up_at_once_on_disjoint_ranges(userns_root: Path,
                                                           foreign: str) -> None:
    first, second = _colliding_names()
    state = Path(os.environ["IPABUILD_STATE_DIR"])
    ups = {name: _up(userns_root, name) for name in (first, second)}
    try:
        _wait_for_holder(state, first)
        started = time.monotonic()
        again = ipabuild("up", "--name", first, "--service", "ldap", root=userns_root)
        assert again.returncode != 0 and time.monotonic() - started < 10
        assert f"stack '{first}' is held by PID {ups[first].pid}" in again.stderr, again.stderr
        assert len(again.stderr.strip().splitlines()) == 1, again.stderr
        for name, process in ups.items():
            output = process.communicate(timeout=600)[0]
            assert process.returncode == 0, f"{name}: {output[-3000:]}"

        pids = {first: _pid(f"ipabuild-{first}-ldap"), second: _pid(f"ipabuild-{second}-ldap"),
                foreign: _pid(foreign)}
        maps = {name: _outside(pid, "uid_map") for name, pid in pids.items()}
        gid_maps = {name: _outside(pid, "gid_map") for name, pid in pids.items()}
        print(f"host uid ranges (start, size): {maps}; old hash: {legacy_userns_base(first)}")
        for name in (first, second):
            assert maps[name] != [(legacy_userns_base(name), USERNS_SIZE)]  # not the old hash
            for other in {first, second, foreign} - {name}:
                assert _disjoint(maps[name], maps[other]), (name, other, maps)
                assert _disjoint(gid_maps[name], gid_maps[other]), (name, other, gid_maps)

        for name in (first, second):  # verify proves it from the kernel's maps
            result = ipabuild("verify", "--name", name, "-k", "ranges", root=userns_root)
            assert result.returncode == 0, result.stdout[-3000:]
            assert "2 passed" in result.stdout, result.stdout[-3000:]
    finally:
        for process in ups.values():
            if process.poll() is None:
                process.kill()
                process.wait()
        for name in (first, second):
            ipabuild("down", "--name", name, "--volumes", root=userns_root)
    assert ipabuild("down", "--name", first, "--volumes", root=userns_root).returncode == 2
    assert (state / "idranges.json").read_text().count('"uids"') == 0  # both released


def test_a_stack_from_before_the_registry_keeps_its_uids(plain_root: Path) -> None:
    """Volumes without the host-IDs label were made for the UID the old hash gave:
    the stack keeps it (its data stays readable); a new stack gets one from the pool."""
    old, new = f"rngold{uuid.uuid4().hex[:4]}", f"rngnew{uuid.uuid4().hex[:4]}"
    for volume in ("data", "ldapi"):
        sh(["podman", "volume", "create", "--label", f"io.ipabuild.stack={old}",
            f"ipabuild-{old}-ldap-{volume}"])
    try:
        for name in (old, new):
            up = ipabuild("up", "--name", name, "--service", "ldap", root=plain_root)
            assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
        uids = {name: int(sh(["podman", "inspect", f"ipabuild-{name}-ldap", "--format",
                              "{{.Config.User}}"]).stdout.split(":")[0]) for name in (old, new)}
        assert uids[old] == legacy_uid(old, "ldap")
        assert UID_POOL.start <= uids[new] < UID_POOL.end
    finally:
        for name in (old, new):
            ipabuild("down", "--name", name, "--volumes", root=plain_root)
