"""Parametrise every check over the containers ``ipabuild verify`` selected.

The selection arrives as JSON in IPABUILD_VERIFY_TARGETS (written by verify.py), so the
checks measure exactly what the command was asked about. ``host_containers`` is every
running container on the host, ipabuild's or not: what a stack's ranges must not meet.
"""

from __future__ import annotations

import contextlib
import json
import os

import pytest

from ipabuild.core.errors import IpabuildError
from ipabuild.proof.targets import ContainerFacts, container_facts
from ipabuild.stack.podman_api import connect


def _selected() -> list[ContainerFacts]:
    names = json.loads(os.environ.get("IPABUILD_VERIFY_TARGETS", "[]"))
    client = connect()
    return [container_facts(client, name) for name in names]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "container" in metafunc.fixturenames:
        selected = _selected()
        metafunc.parametrize("container", selected, ids=[c.name for c in selected])
    if "all_containers" in metafunc.fixturenames:
        metafunc.parametrize("all_containers", [_selected()], ids=["all"])
    if "host_containers" in metafunc.fixturenames:
        metafunc.parametrize("host_containers", [_running()], ids=["host"])


def _running() -> list[ContainerFacts]:
    client = connect()
    found = []
    for listed in client.containers.list():
        with contextlib.suppress(IpabuildError):  # stopped or removed since the listing
            found.append(container_facts(client, listed.name))
    return found
