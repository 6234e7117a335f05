"""Pinned manifests: image references by digest, from a push's JSON or from the registry;
a digest that cannot be had is one line and exit status 2."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from ipabuild.build import buildah, registry
from ipabuild.build.push import push_image
from ipabuild.build.results import ImageResult
from ipabuild.cli import main
from ipabuild.core.commands import CommandResult
from ipabuild.core.errors import UsageError
from ipabuild.emit import kustomize
from ipabuild.emit.manifests.pss import pod_spec
from ipabuild.spec.load import load_project, load_services

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = "127.0.0.1:5000/ipa"


def _digest(name: str) -> str:
    return "sha256:" + name.encode().hex().ljust(64, "0")[:64]


def _services() -> list[str]:
    return [s.name for s in load_services(ROOT, load_project(ROOT), [])]


def _deployed() -> list[str]:
    """The services whose images the overlays run (the server name is a Service there)."""
    return [s.name for s in load_services(ROOT, load_project(ROOT), []) if not s.serves_name]


def _push_document(path: Path, services: list[str], **changes: dict[str, Any]) -> Path:
    images = [{"service": name, "name": f"localhost/ipabuild/{name}:latest",
               "pushed_to": f"docker://{REGISTRY}/{name}:latest", "digest": _digest(name)}
              for name in services]
    images.append({"service": "framework", "pushed_to": "", "digest": ""})  # a stage
    for image in images:
        image.update(changes.get(image["service"], {}))
    path.write_text(json.dumps({"family": "debian", "tag": "latest", "images": images}))
    return path


def _run(project: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--root", str(project), "manifests", *args])
    return result.exit_code, result.output


def _images(project: Path, overlay: str) -> dict[str, str]:
    """container name -> image of every workload, as kustomize builds the overlay."""
    tree = project / "kustomize"
    generator = yaml.safe_load((tree / "secrets/kustomization.yaml").read_text())
    for name in generator["secretGenerator"][0]["files"]:
        (tree / "secrets" / name).write_text("dummy")
    found = {}
    for obj in kustomize.build(tree / "overlays" / overlay):
        spec = pod_spec(obj)
        for container in (spec or {}).get("containers", []) + (spec or {}).get(
                "initContainers", []):
            found[container["name"]] = container["image"]
    return found


def test_push_digests_reads_registry_and_digests(tmp_path: Path) -> None:
    services = _services()
    found = registry.push_digests(_push_document(tmp_path / "p.json", services), services)
    assert found == (REGISTRY, {name: _digest(name) for name in services})


@pytest.mark.parametrize(("changes", "message"), [
    ({"kdc": {"digest": ""}}, "kdc was not pushed with a digest"),
    ({"kdc": {"pushed_to": ""}}, "kdc was not pushed with a digest"),
    ({"kdc": {"digest": "sha256:abc"}}, "is not a digest"),
    ({"kdc": {"pushed_to": "docker://other:5000/ipa/kdc:latest"}}, "2 registries"),
    ({"kdc": {"pushed_to": f"docker://{REGISTRY}/ldap:latest"}}, "not as .../kdc"),
])
def test_push_digests_refuses_what_it_cannot_pin(tmp_path: Path, changes: dict[str, Any],
                                                 message: str) -> None:
    services = _services()
    with pytest.raises(UsageError, match=message.replace(".", r"\.")):
        registry.push_digests(_push_document(tmp_path / "p.json", services, **changes),
                              services)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(UsageError, match="not the JSON of"):
        registry.push_digests(tmp_path / "bad.json", services)


def test_digests_from_a_push_land_in_every_overlay(project_copy: Path) -> None:
    services = _services()
    push = _push_document(project_copy / "push.json", services)
    status, output = _run(project_copy, "--digests-from", str(push))
    assert status == 0, output
    text = (project_copy / "kustomize/overlays/split/kustomization.yaml").read_text()
    entries = yaml.safe_load(text.split("\n", 2)[2])["images"]
    assert all("newTag" not in e for e in entries)
    assert {e["newName"]: e["digest"] for e in entries} == {
        f"{REGISTRY}/{name}": _digest(name) for name in _deployed()}
    for overlay in ("split", "split-userns", "openshift/split-userns"):
        images = _images(project_copy, overlay)
        assert set(images) >= set(_deployed())
        for container, image in images.items():
            service = container.removesuffix("-init")
            assert image == f"{REGISTRY}/{service}@{_digest(service)}", (overlay, container)
    assert _run(project_copy, "--check", "--digests-from", str(push))[0] == 0
    assert _run(project_copy, "--check")[0] == 1  # by tag again: drift


def test_an_unreachable_registry_is_one_line_and_exit_2(project_copy: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed once the block ends: nothing listens
    status, output = _run(project_copy, "--registry", f"127.0.0.1:{port}/x", "--digests")
    assert status == 2, output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ipabuild: error: ")
    assert "Traceback" not in output and not (project_copy / "kustomize").exists()
    if "skopeo is not installed" not in output:
        assert f"no digest for 127.0.0.1:{port}/x/" in output


def test_digests_ask_the_registry_for_each_tag(project_copy: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[str, bool]] = []

    def digest(reference: str, tls_verify: bool) -> str:
        asked.append((reference, tls_verify))
        return _digest(reference.rsplit("/", 1)[1].split(":")[0])

    monkeypatch.setattr(registry, "remote_digest", digest)
    status, output = _run(project_copy, "--registry", "reg.example/ipa", "--tag", "v2",
                          "--digests")
    assert status == 0, output
    assert asked == [(f"reg.example/ipa/{name}:v2", True) for name in _services()]
    assert _images(project_copy, "split")["ldap"] == f"reg.example/ipa/ldap@{_digest('ldap')}"
    status, output = _run(project_copy, "--digests", "--digests-from", "x.json")
    assert status == 2 and "use one of them" in output


def test_monolith_digest(project_copy: Path) -> None:
    status, output = _run(project_copy, "--monolith-digest", "sha256:1234")
    assert status == 2 and "--monolith-digest: 'sha256:1234' is not a digest" in output
    assert _run(project_copy, "--monolith-digest", _digest("freeipa"))[0] == 0
    images = _images(project_copy, "monolithic-userns")
    assert set(images.values()) == {f"quay.io/freeipa/freeipa-server@{_digest('freeipa')}"}


def test_default_tls_verify() -> None:
    assert not registry.default_tls_verify("127.0.0.1:5000/ipa")
    assert not registry.default_tls_verify("localhost/ipabuild")
    assert registry.default_tls_verify("quay.io/ipa")


def test_a_push_records_the_digest_buildah_wrote(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    calls: list[list[str]] = []

    def push(name: str, destination: str, *, tls_verify: bool,
             digest_file: Path | None = None) -> CommandResult:
        calls.append([name, destination, str(tls_verify)])
        assert digest_file is not None
        digest_file.write_text(_digest("kdc") + "\n")
        return CommandResult(["buildah", "push"], 0, "", "")

    monkeypatch.setattr(buildah, "push", push)
    result = ImageResult("kdc", "localhost/ipabuild/kdc:t1", "cached")
    push_image(result, REGISTRY, "t1", None, lambda _s, _m: None)
    assert calls == [["localhost/ipabuild/kdc:t1", f"docker://{REGISTRY}/kdc:t1", "False"]]
    assert result.pushed_to == f"docker://{REGISTRY}/kdc:t1"
    assert result.to_json()["digest"] == _digest("kdc")
