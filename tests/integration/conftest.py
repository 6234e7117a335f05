"""Integration fixtures: images are built once per session with the real CLI (buildah)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.podman_cli import Sandbox, sh
from tests.integration.stack_client import Client, build_client_image

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ["ldap", "kdc", "http", "ca", "server"]
# What the shared test stack starts: everything (http pulls in kdc, ca and ldap).
STACK_SERVICES: list[str] = []
# The services that run in the host's user namespace under a UID of their own: every
# split service, the CA and its one-time pkispawn included.
HOST_UID_SERVICES = ["ldap", "kdc", "http", "server", "ca"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


def ipabuild(*args: str, root: Path = ROOT, timeout: float = 1800) -> subprocess.CompletedProcess:
    """Run the installed CLI as a user would."""
    return subprocess.run([sys.executable, "-m", "ipabuild.cli", "--root", str(root), *args],
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="session")
def built() -> dict[str, dict]:
    """Build (or find cached) every split image; map service -> its JSON result."""
    result = ipabuild("images", "--json")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    document = json.loads(result.stdout)
    return {image["service"]: image for image in document["images"]}


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox()
    try:
        yield box
    finally:
        box.cleanup()


@pytest.fixture(scope="session")
def stack_uids() -> dict[str, int]:
    """The host UIDs the shared stack's split services run as: random ones each run, as
    OpenShift assigns arbitrary UIDs (empty for a reused developer's stack). The CA's
    init (pkispawn) runs under its random UID too, and is interrupted once on the way."""
    if os.environ.get("IPABUILD_TEST_STACK"):
        return {}
    uids = random.sample(range(1_000_000_000, 2_000_000_000), len(HOST_UID_SERVICES))
    return dict(zip(HOST_UID_SERVICES, uids, strict=True))


@pytest.fixture(scope="session")
def stack(built: dict[str, dict], stack_uids: dict[str, int]) -> Iterator[str]:
    build_client_image()
    reused = os.environ.get("IPABUILD_TEST_STACK")
    if reused:
        # A developer's running stack (`ipabuild up --name NAME`): used, never taken down.
        yield reused
        return
    name = f"t{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    uid_options = [f"--uid={service}={uid}" for service, uid in stack_uids.items()]
    try:
        interrupted = _interrupt_up_during_init(name, uid_options)
        result = ipabuild("up", "--name", name, *STACK_SERVICES)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        # the recovery is proven only if the second up saw the half-done CA and redid it
        assert "ca: running its one-time init step" in result.stderr, result.stderr[-3000:]
        print(f"up of {name} interrupted in the CA's init after {interrupted:.1f}s, then up "
              f"again: {time.monotonic() - started:.1f}s in all, UIDs {stack_uids}")
        yield name
    finally:
        ipabuild("down", "--name", name, "--volumes")


def _logs(container: str) -> str:
    result = subprocess.run(["podman", "logs", container], capture_output=True, text=True)
    return result.stdout + result.stderr


def _interrupt_up_during_init(name: str, uid_options: list[str]) -> float:
    """Leave the stack half-started, as a killed `ipabuild up` or a node failure would:
    SIGKILL `up` and the CA's init container 15 s into pkispawn. The shared stack then
    comes up through `up` again, so every run proves that recovery (the init step
    starts over, the healthy ldap and kdc are kept). Returns the seconds until the kill."""
    started = time.monotonic()
    up = subprocess.Popen([sys.executable, "-m", "ipabuild.cli", "--root", str(ROOT), "up",
                           "--name", name, *uid_options, *STACK_SERVICES],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    init = f"ipabuild-{name}-ca-init"
    try:
        while "running pkispawn" not in _logs(init):
            assert up.poll() is None, f"up ended before the CA's init: {up.stderr.read()}"
            assert time.monotonic() - started < 600, "the CA's init step never started"
            time.sleep(1)
        time.sleep(15)
    finally:
        up.kill()
        up.communicate()
        subprocess.run(["podman", "kill", init], capture_output=True)
    return time.monotonic() - started


@pytest.fixture(scope="session")
def client(stack: str) -> Client:
    return Client(stack, ROOT / ".ipabuild" / "secrets" / stack)


MONOLITH_POLL = 20


@pytest.fixture(scope="session")
def monolith() -> Iterator[str]:
    """A monolith (every service of split mode in one container, root inside, in a user
    namespace of its own), shared by the tests of both modes."""
    reused = os.environ.get("IPABUILD_TEST_MONOLITH")
    if reused:
        # A developer's running monolith (`ipabuild up --mode monolithic --name NAME`):
        # used as it is (no image build), never taken down.
        yield reused
        return
    build = ipabuild("images", "--service", "monolithic", "--json")
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    build_client_image()
    name = f"m{uuid.uuid4().hex[:6]}"
    # A short certificate poll: the services' watchers (http's renewed ticket, the kdc's
    # anchors) run every MONOLITH_POLL seconds, many times within the tests.
    up = ipabuild("up", "--mode", "monolithic", "--name", name,
                  "--env", f"IPABUILD_CERT_POLL={MONOLITH_POLL}")
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        yield name
    finally:
        ipabuild("down", "--name", name, "--volumes")


@pytest.fixture(scope="session", params=["split", "monolithic"])
def mode(request: pytest.FixtureRequest) -> str:
    """Each mode in turn: the IPA tests that take ``ipa_client`` run against both."""
    return str(request.param)


@pytest.fixture(scope="session")
def mode_stack(mode: str, request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("stack" if mode == "split" else "monolith"))


@pytest.fixture(scope="session")
def ipa_client(mode_stack: str) -> Client:
    return Client(mode_stack, ROOT / ".ipabuild" / "secrets" / mode_stack)


def service_exec(mode: str, stack: str, service: str, *argv: str) -> list[str]:
    """The podman command that runs ``argv`` in ``service`` of a stack of ``mode``: its
    container in split mode, its tree in the monolith (``ipabuild-monolith exec``)."""
    if mode == "split":
        return ["podman", "exec", f"ipabuild-{stack}-{service}", *argv]
    return ["podman", "exec", f"ipabuild-{stack}-monolithic", "ipabuild-monolith", "exec",
            service, "--", *argv]


@pytest.fixture(scope="session")
def mode_ca_pem(mode: str, mode_stack: str) -> str:
    """The IPA CA's certificate as Dogtag's own NSS database holds it, in either mode."""
    pem = sh(service_exec(mode, mode_stack, "ca", "cat", "/tmp/ipabuild-ca/ca.pem")).stdout
    assert "BEGIN CERTIFICATE" in pem, pem
    return pem


@pytest.fixture(scope="module")
def ca_pem(stack: str) -> str:
    """The IPA CA's certificate as Dogtag's own NSS database holds it."""
    pem = sh(["podman", "exec", f"ipabuild-{stack}-ca", "cat", "/tmp/ipabuild-ca/ca.pem"]).stdout
    assert "BEGIN CERTIFICATE" in pem, pem
    return pem
