"""compose/compose.yaml brings up a split stack with podman-compose on which kinit and
curl --negotiate pass (from the separate client container)."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.integration.conftest import ROOT, ipabuild
from tests.integration.stack_client import CLIENT_IMAGE, build_client_image, krb5_conf

COMPOSE = ["podman-compose", "-f", str(ROOT / "compose" / "compose.yaml")]


def _up(project: str) -> None:
    """``podman-compose up -d``, failing with every container's state if it hangs."""
    try:
        up = subprocess.run([*COMPOSE, "--verbose", "-p", project, "up", "-d"],
                            capture_output=True, text=True, timeout=300, check=False)
    except subprocess.TimeoutExpired as exc:
        # Seen (2026-12-07): podman-compose waits for a dependency to be *running*
        # (`podman wait --condition=running`), which never returns for one that has
        # exited; say which containers are in which state and what it said.
        said = (exc.stderr or b"")
        said = said.decode(errors="replace") if isinstance(said, bytes) else said
        pytest.fail(f"podman-compose up -d did not return within 300 s; containers:\n"
                    f"{_states(project)}\npodman-compose said:\n{said[-4000:]}")
    assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]


@pytest.fixture(scope="module")
def compose_project(built: dict[str, dict]) -> Iterator[str]:
    build_client_image()
    secrets = ipabuild("secrets", "--name", "compose", "--podman")
    assert secrets.returncode == 0, secrets.stderr
    project = f"ipactest{uuid.uuid4().hex[:6]}"
    try:
        _up(project)
        yield project
    finally:
        subprocess.run([*COMPOSE, "-p", project, "down", "-v"], capture_output=True,
                       timeout=300, check=False)
        # `ipabuild secrets --podman` made host-wide podman secrets: none stay behind
        for secret in (ROOT / ".ipabuild" / "secrets" / "compose").iterdir():
            subprocess.run(["podman", "secret", "rm", secret.name], capture_output=True,
                           check=False)


def _states(project: str) -> str:
    """Every container of the project with its state, for a failure's message."""
    return subprocess.run(["podman", "ps", "-a", "--filter", f"name={project}_", "--format",
                           "{{.Names}} {{.Status}}"],
                          capture_output=True, text=True, check=False).stdout


def _log_tail(container: str) -> str:
    """The last lines a container wrote (podman logs puts its stderr on stderr)."""
    logs = subprocess.run(["podman", "logs", "--tail", "60", container],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          check=False).stdout
    return logs[-6000:]


def test_compose_file_is_current() -> None:
    result = ipabuild("compose", "--check")
    assert result.returncode == 0, result.stderr


def _wait_healthy(project: str) -> None:
    for service in ("ldap", "kdc", "ca", "http"):
        container = f"{project}_{service}_1"
        deadline = time.monotonic() + 240
        while subprocess.run(["podman", "healthcheck", "run", container],
                             capture_output=True, check=False).returncode != 0:
            assert time.monotonic() < deadline, (
                f"{container} never became healthy:\n{_states(project)}\n"
                f"{container}'s log:\n{_log_tail(container)}")
            time.sleep(1)


def _kinit_and_spnego(project: str) -> None:
    password = (ROOT / ".ipabuild/secrets/compose/admin-password").read_text()
    script = ('printf "%s" "$KRB5_CONF_TEXT" > /tmp/krb5.conf; export KRB5_CONFIG=/tmp/krb5.conf; '
              'printf "%s" "$PW" | kinit admin >/dev/null && klist && '
              "curl -sSk --negotiate -u : https://http.example.test/ipa/whoami")
    result = subprocess.run(
        ["podman", "run", "--rm", "--network", f"{project}_ipa", "-e", f"PW={password}",
         "-e", f"KRB5_CONF_TEXT={krb5_conf('kdc.example.test:8088', 1465)}", CLIENT_IMAGE,
         "bash", "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "krbtgt/EXAMPLE.TEST@EXAMPLE.TEST" in result.stdout
    assert result.stdout.strip().endswith("admin@EXAMPLE.TEST")


def test_compose_stack_serves_kinit_and_spnego(compose_project: str) -> None:
    # http starts once the ca has published the IPA CA's certificate, and the ca's first
    # start includes its one-time pkispawn.
    _wait_healthy(compose_project)
    _kinit_and_spnego(compose_project)


def test_compose_stack_comes_back_on_its_volumes(compose_project: str) -> None:
    """``down`` then ``up -d`` on the same volumes: the CA's init finds the instance and
    exits at once, and podman-compose must still start the CA and everything after it
    (it hung there while the CA only waited for its init to be running)."""
    down = subprocess.run([*COMPOSE, "-p", compose_project, "down"], capture_output=True,
                          text=True, timeout=300, check=False)
    assert down.returncode == 0, down.stderr[-2000:]
    _up(compose_project)
    _wait_healthy(compose_project)
    init_log = _log_tail(f"{compose_project}_ca-init_1")
    assert "already initialised" in init_log, init_log
    _kinit_and_spnego(compose_project)
