"""Play the built split-userns overlay with `podman kube play`: ldap becomes healthy in
its own user namespace (hostUsers: false honoured; uid_map onto a non-root host range).

The manifests are played as kustomize builds them; the harness translates only what
podman 4.3.1's kube play cannot do (see ../shared/HOST.md and docs/manifests.md):
- StatefulSet is not played: it becomes a Deployment, each volumeClaimTemplate a PVC
  (a podman named volume) with a throwaway name;
- Secret volumes are broken (subPath items become directories, files stay base64), and
  so is subPath on hostPath: the Secret object is dropped and each mounted item becomes a
  file hostPath holding the decoded value, mounted at the same path, read-only, as kubelet
  would project it;
- `--userns=auto:size=65536`: podman's default auto size (1024) maps no UID as high as
  the images' USER; 65536 is what a kubelet gives a pod with hostUsers: false.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from ipabuild import kustomize
from ipabuild.emit import ManifestOptions, render_manifests
from ipabuild.spec import load_project, load_services

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SERVICE = "ldap"  # the service played here (its image exists on this host)


def _podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=check,
                          timeout=300)


def _playable(objects: list[dict[str, Any]], wanted: str, suffix: str,
              secret_dir: Path) -> list[dict[str, Any]]:
    secrets = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Secret"}
    played: list[dict[str, Any]] = []
    for obj in objects:
        if obj["kind"] == "ConfigMap":
            played.append(obj)
        if obj["kind"] not in ("StatefulSet", "Deployment") or \
                obj["metadata"]["name"] != wanted:
            continue
        spec = obj["spec"]
        pod = spec["template"]["spec"]
        for template in spec.pop("volumeClaimTemplates", []):
            claim = f"ipabuild-play-{suffix}-{wanted}-{template['metadata']['name']}"
            played.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                           "metadata": {"name": claim}, "spec": template["spec"]})
            pod.setdefault("volumes", []).append(
                {"name": template["metadata"]["name"],
                 "persistentVolumeClaim": {"claimName": claim}})
        spec.pop("serviceName", None)
        for volume in list(pod.get("volumes", [])):
            if "secret" not in volume:
                continue
            source = secrets[volume["secret"]["secretName"]]
            pod["volumes"].remove(volume)
            for item in volume["secret"]["items"]:
                path = secret_dir / item["path"]
                path.write_bytes(base64.b64decode(source["data"][item["key"]]))
                path.chmod(0o444)  # unmapped owner inside the userns: readable by mode
                pod["volumes"].append({"name": f"secret-{item['path']}",
                                       "hostPath": {"path": str(path), "type": "File"}})
            for container in [*pod.get("initContainers", []), *pod["containers"]]:
                for mount in container.get("volumeMounts", []):
                    if mount["name"] == volume["name"]:
                        mount["name"] = f"secret-{mount.pop('subPath')}"
        obj["kind"] = "Deployment"
        obj["metadata"]["name"] = f"ipabuild-play-{suffix}-{wanted}"
        played.append(obj)
    return played


@pytest.fixture
def played(tmp_path: Path):  # type: ignore[no-untyped-def]
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed")
    project = load_project(ROOT)
    image = f"{project.image.prefix}/{SERVICE}:{project.image.tag}"
    if _podman("image", "exists", image, check=False).returncode != 0:
        pytest.skip(f"{image} is not built (ipabuild images --service {SERVICE})")
    tree = tmp_path / "kustomize"
    files = render_manifests(project, load_services(ROOT, project, []),
                             ManifestOptions(project.image.prefix, project.image.tag))
    for relative, text in files.items():
        (tree / relative).parent.mkdir(parents=True, exist_ok=True)
        (tree / relative).write_text(text)
    generator = yaml.safe_load((tree / "secrets/kustomization.yaml").read_text())
    for name in generator["secretGenerator"][0]["files"]:
        (tree / "secrets" / name).write_text(f"play-{uuid.uuid4().hex}")
    objects = kustomize.build(tree / "overlays/split-userns")
    suffix = uuid.uuid4().hex[:8]
    secret_dir = tmp_path / "secret-files"
    secret_dir.mkdir()
    secret_dir.chmod(0o755)
    documents = _playable(objects, SERVICE, suffix, secret_dir)
    manifest = tmp_path / "play.yaml"
    manifest.write_text(yaml.safe_dump_all(documents))
    try:
        result = _podman("kube", "play", "--userns=auto:size=65536", str(manifest),
                         check=False)
        assert result.returncode == 0, result.stderr
        yield f"ipabuild-play-{suffix}-{SERVICE}-pod-0-{SERVICE}", documents
    finally:
        _podman("kube", "play", "--down", str(manifest), check=False)
        for doc in documents:
            if doc["kind"] == "PersistentVolumeClaim":
                _podman("volume", "rm", "-f", doc["metadata"]["name"], check=False)


def test_split_userns_ldap_becomes_healthy_in_its_own_user_namespace(played) -> None:  # type: ignore[no-untyped-def]
    container, documents = played
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["hostUsers"] is False
    probe = pod["containers"][0]["readinessProbe"]["exec"]["command"]
    deadline = time.monotonic() + 180
    while True:
        state = _podman("inspect", "-f", "{{.State.Status}}", container).stdout.strip()
        assert state == "running", _podman("logs", container, check=False).stderr[-3000:]
        if _podman("exec", container, *probe, check=False).returncode == 0:
            break
        assert time.monotonic() < deadline, _podman("logs", container,
                                                    check=False).stderr[-3000:]
        time.sleep(2)
    pid = _podman("inspect", "-f", "{{.State.Pid}}", container).stdout.strip()
    uid_map = [line.split() for line in Path(f"/proc/{pid}/uid_map").read_text().splitlines()]
    assert uid_map and all(int(host) != 0 for _inside, host, _size in uid_map), uid_map
    status = Path(f"/proc/{pid}/status").read_text()
    uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
    assert all(int(uid) != 0 for uid in uids), uids  # host view: no UID 0 in any field
    inside = _podman("exec", container, "id", "-u").stdout.strip()
    assert inside != "0"
