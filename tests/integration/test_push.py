"""``ipabuild images --push`` against a real OCI registry (Debian's docker-registry) on loopback."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import ipabuild


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    config = tmp_path / "config.yml"
    config.write_text(
        "version: 0.1\n"
        f"storage:\n  filesystem:\n    rootdirectory: {tmp_path / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
        "log:\n  level: warn\n")
    server = subprocess.Popen(["docker-registry", "serve", str(config)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"127.0.0.1:{port}"
    try:
        for _ in range(50):
            try:
                urllib.request.urlopen(f"http://{address}/v2/", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        yield address
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_push_to_a_real_registry(built: dict[str, dict], registry: str) -> None:
    result = ipabuild("images", "--service", "kdc", "--push", f"{registry}/ipa", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    images = {i["service"]: i for i in json.loads(result.stdout)["images"]}
    assert images["framework"]["pushed_to"] == ""  # a build stage stays local
    image = images["kdc"]
    assert image["status"] == "cached"  # pushing must not rebuild
    assert image["pushed_to"] == f"docker://{registry}/ipa/kdc:latest"
    with urllib.request.urlopen(f"http://{registry}/v2/ipa/kdc/tags/list", timeout=5) as reply:
        assert json.load(reply)["tags"] == ["latest"]
    inspect = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", f"docker://{registry}/ipa/kdc:latest"],
        capture_output=True, text=True, check=True)
    assert json.loads(inspect.stdout)["Labels"]["io.ipabuild.service"] == "kdc"


def test_push_to_an_unreachable_registry_fails_clearly(built: dict[str, dict]) -> None:
    result = ipabuild("images", "--service", "kdc", "--push", f"127.0.0.1:{free_port()}/x")
    assert result.returncode == 1
    assert "push" in result.stderr and "Traceback" not in result.stderr
