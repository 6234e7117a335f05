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
import yaml

from ipabuild.emit import kustomize
from ipabuild.emit.manifests.pss import pod_spec
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


def _overlay_images(project: Path, overlay: str) -> dict[str, str]:
    """container name -> image of every workload of ``overlay``, built by kustomize."""
    tree = project / "kustomize"
    generator = yaml.safe_load((tree / "secrets/kustomization.yaml").read_text())
    for name in generator["secretGenerator"][0]["files"]:
        (tree / "secrets" / name).write_text("dummy")
    images = {}
    for obj in kustomize.build(tree / "overlays" / overlay):
        spec = pod_spec(obj) or {}
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            images[container["name"]] = container["image"]
    return images


def test_manifests_pin_the_pushed_digests(built: dict[str, dict], registry: str,
                                          project_copy: Path, tmp_path: Path) -> None:
    """Push every image, then `manifests --digests` (from the registry) and
    `--digests-from` (the push's JSON) name each image by the digest skopeo confirms."""
    result = ipabuild("images", "--push", f"{registry}/ipa", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    push = tmp_path / "push.json"
    push.write_text(result.stdout)
    pushed = {i["service"]: i for i in json.loads(result.stdout)["images"] if i["pushed_to"]}
    for image in pushed.values():
        assert image["digest"].startswith("sha256:"), image
    for options in (["--registry", f"{registry}/ipa", "--digests"],
                    ["--digests-from", str(push)]):
        # a copy of the project: the checked-in kustomize/ stays by tag
        written = ipabuild("manifests", *options, root=project_copy)
        assert written.returncode == 0, written.stderr[-2000:]
        images = _overlay_images(project_copy, "split-userns")
        assert images, "no workload in the split-userns overlay"
        for container, image in images.items():
            name, _, digest = image.partition("@")
            service = name.rsplit("/", 1)[-1]
            assert name == f"{registry}/ipa/{service}" and container.startswith(service)
            assert digest == pushed[service]["digest"], (options, container)
            inspect = subprocess.run(
                ["skopeo", "inspect", "--tls-verify=false", f"docker://{image}"],
                capture_output=True, text=True, check=True)
            facts = json.loads(inspect.stdout)
            assert facts["Digest"] == digest
            assert facts["Labels"]["io.ipabuild.service"] == service


def test_digests_of_an_unpushed_tag_fail_clearly(registry: str, project_copy: Path) -> None:
    result = ipabuild("manifests", "--registry", f"{registry}/never-pushed", "--digests",
                      root=project_copy)
    assert result.returncode == 2
    assert "no digest for" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
