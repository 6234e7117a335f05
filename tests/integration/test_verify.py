"""``ipabuild verify`` and ``probe`` against real containers: the split stack passes, a
container run as root without a user namespace fails (the negative control), and two
stacks' processes never share host UIDs."""

from __future__ import annotations

import json
import sys
import uuid

from tests.integration.conftest import ROOT, ipabuild
from tests.integration.podman_cli import Sandbox, sh


def test_split_stack_passes_verify(stack: str) -> None:
    result = ipabuild("verify", "--name", stack)
    assert result.returncode == 0, result.stdout[-3000:]
    assert " passed" in result.stdout and "failed" not in result.stdout
    assert "host GID 0" in result.stdout  # reported separately, as a warning


def test_probe_reports_non_root_host_uids(stack: str) -> None:
    result = ipabuild("probe", f"ipabuild-{stack}-ldap", "--json")
    assert result.returncode == 0, result.stderr
    processes = json.loads(result.stdout)["processes"]
    assert any(p["command"] == "ns-slapd" for p in processes)
    for p in processes:
        assert 0 not in p["uids_host"] and p["no_new_privs"] is True
        assert p["capabilities_effective"] == []
        assert p["own_user_namespace"] is False and p["seccomp"] == "filter"


def test_root_without_user_namespace_fails_verify(built: dict[str, dict],
                                                  sandbox: Sandbox) -> None:
    """The negative control: if this passed, verify would prove nothing."""
    control = f"negctl{uuid.uuid4().hex[:6]}"
    name = f"ipabuild-test-{control}"
    sh(["podman", "run", "-d", "--name", name, "--label", f"io.ipabuild.stack={control}",
        "--label", "io.ipabuild.service=rooted", "--user", "0:0", "--entrypoint", "sleep",
        built["kdc"]["name"], "300"])
    sandbox.containers.append(name)
    result = ipabuild("verify", "--name", control)
    assert result.returncode == 1, result.stdout[-3000:]
    assert "processes root on the host" in result.stdout
    assert "(sleep)" in result.stdout  # the offending process is named
    probe = ipabuild("probe", name)
    assert probe.returncode == 1


def test_root_in_its_own_user_namespace_fails_verify_in_split_mode(
        built: dict[str, dict], sandbox: Sandbox) -> None:
    """The control for split mode's "no UID 0 in any user namespace": a container of a
    split stack running as root in a user namespace of its own (never host root, which
    the checks above pass) fails verify, naming the process."""
    control = f"nsctl{uuid.uuid4().hex[:6]}"
    name = f"ipabuild-test-{control}"
    sh(["podman", "run", "-d", "--name", name, "--label", f"io.ipabuild.stack={control}",
        "--label", "io.ipabuild.service=rooted", "--label", "io.ipabuild.mode=split",
        "--userns=auto", "--user", "0:0", "--cap-drop", "all", "--security-opt",
        "no-new-privileges", "--entrypoint", "sleep", built["kdc"]["name"], "300"])
    sandbox.containers.append(name)
    result = ipabuild("verify", "--name", control)
    assert result.returncode == 1, result.stdout[-3000:]
    assert "run as UID 0 inside their user namespace (split mode runs none)" in result.stdout
    assert "(sleep)" in result.stdout
    assert "processes root on the host" not in result.stdout  # never host root


def test_two_stacks_use_disjoint_host_uids(stack: str) -> None:
    other = f"t{uuid.uuid4().hex[:6]}"
    try:
        up = ipabuild("up", "--name", other, "--service", "kdc")
        assert up.returncode == 0, up.stderr[-3000:]
        result = ipabuild("verify", "-k", "disjoint")
        assert result.returncode == 0, result.stdout[-3000:]
        mine = json.loads(ipabuild("status", "--name", stack, "--json").stdout)
        theirs = json.loads(ipabuild("status", "--name", other, "--json").stdout)
        mine_uids = {r["uid_on_host"] for r in mine if r["uid_on_host"] is not None}
        their_uids = {r["uid_on_host"] for r in theirs if r["uid_on_host"] is not None}
        assert mine_uids and their_uids and mine_uids.isdisjoint(their_uids)
    finally:
        ipabuild("down", "--name", other, "--volumes")


def test_verify_with_nothing_running_is_a_clear_error() -> None:
    result = ipabuild("verify", "--name", f"nothing{uuid.uuid4().hex[:6]}")
    assert result.returncode == 2
    assert "nothing running" in result.stderr and "Traceback" not in result.stderr


def test_a_stack_whose_processes_are_not_visible_is_a_clear_error(stack: str) -> None:
    """Run from another PID namespace (as a CI job in its own namespace sees a stack that
    the host started), the stack's host PIDs are absent from /proc: verify must say so,
    not measure nothing and pass."""
    result = sh(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-m",
                 "ipabuild.cli", "--root", str(ROOT), "verify", "--name", stack], check=False)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "does not show" in result.stderr and "Traceback" not in result.stderr
