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

from tests.integration.podman_cli import Sandbox
from tests.integration.stack_client import Client, build_client_image

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ["ldap", "kdc", "http", "ca"]
# What the shared test stack starts: everything (http pulls in kdc, ca and ldap).
STACK_SERVICES: list[str] = []
# The services that run in the host's user namespace under a UID of their own (the ca
# runs as its image's UID in a namespace of its own).
HOST_UID_SERVICES = ["ldap", "kdc", "http"]


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
    """The host UIDs the shared stack's split services run as: three random ones each
    run, as OpenShift assigns arbitrary UIDs (empty for a reused developer's stack)."""
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
    result = ipabuild("up", "--name", name, *uid_options, *STACK_SERVICES)
    try:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        print(f"first up of {name}: {time.monotonic() - started:.1f}s, UIDs {stack_uids}")
        yield name
    finally:
        ipabuild("down", "--name", name, "--volumes")


@pytest.fixture(scope="session")
def client(stack: str) -> Client:
    return Client(stack, ROOT / ".ipabuild" / "secrets" / stack)
