"""`ipabuild manifests`: writes, --check names what drifted, and spec errors name the service."""

from __future__ import annotations

import shutil
from pathlib import Path

from click.testing import CliRunner

from ipabuild.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _run(project: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--root", str(project), "manifests", *args])
    return result.exit_code, result.output


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def test_write_is_idempotent_and_check_passes(project_copy: Path) -> None:
    status, output = _run(project_copy)
    assert status == 0 and "wrote     kustomize/overlays/split/kustomization.yaml" in output
    before = {p: p.read_bytes() for p in (project_copy / "kustomize").rglob("*") if p.is_file()}
    status, output = _run(project_copy)
    assert status == 0 and "wrote" not in output
    after = {p: p.read_bytes() for p in (project_copy / "kustomize").rglob("*") if p.is_file()}
    assert before == after
    status, output = _run(project_copy, "--check")
    assert status == 0 and "up to date" in output


def test_check_names_the_drifted_files_with_a_diff(project_copy: Path) -> None:
    shutil.copytree(ROOT / "kustomize", project_copy / "kustomize")
    _run(project_copy)
    (project_copy / "kustomize/overlays/split/stale.yaml").write_text("kind: Stale\n")
    (project_copy / "kustomize/base/config.yaml").unlink()
    _edit(project_copy / "services/kdc/service.yaml", "port: 8749", "port: 8750")
    status, output = _run(project_copy, "--check")
    assert status == 1
    assert "changed    kustomize/overlays/split/kdc.yaml (+" in output
    assert "+        - containerPort: 8750" in output or "containerPort: 8750" in output
    assert "missing    kustomize/base/config.yaml" in output
    assert "unexpected kustomize/overlays/split/stale.yaml" in output
    # the secret values written by `ipabuild secrets` are not the generator's business
    (project_copy / "kustomize/secrets/admin-password").write_text("x")
    _run(project_copy)
    assert _run(project_copy, "--check")[0] == 0
    assert (project_copy / "kustomize/secrets/admin-password").exists()
    assert not (project_copy / "kustomize/overlays/split/stale.yaml").exists()


def test_registry_and_tag_options(project_copy: Path) -> None:
    status, _ = _run(project_copy, "--registry", "127.0.0.1:5000/ipa", "--tag", "t1")
    assert status == 0
    text = (project_copy / "kustomize/overlays/split/kustomization.yaml").read_text()
    assert "newName: 127.0.0.1:5000/ipa/ldap" in text and "newTag: t1" in text
    assert _run(project_copy, "--check")[0] == 1  # default options differ: drift
    assert _run(project_copy, "--check", "--registry", "127.0.0.1:5000/ipa",
                "--tag", "t1")[0] == 0


def test_namespace_from_the_project_and_the_option(project_copy: Path) -> None:
    assert _run(project_copy)[0] == 0
    for overlay in ("split", "monolithic-userns"):
        text = (project_copy / f"kustomize/overlays/{overlay}/kustomization.yaml").read_text()
        assert "\nnamespace: ipabuild\n" in text, overlay
    assert _run(project_copy, "--namespace", "tenant1")[0] == 0
    text = (project_copy / "kustomize/overlays/split/kustomization.yaml").read_text()
    assert "\nnamespace: tenant1\n" in text
    assert _run(project_copy, "--check")[0] == 1  # the project's namespace differs: drift
    _edit(project_copy / "ipabuild.yaml", "namespace: ipabuild", "namespace: tenant1")
    assert _run(project_copy, "--check")[0] == 0


def test_default_or_invalid_namespace_is_refused(project_copy: Path) -> None:
    status, output = _run(project_copy, "--namespace", "default")
    assert status == 2 and "not `default`" in output
    status, output = _run(project_copy, "--namespace", "Tenant_1")
    assert status == 2 and "DNS label" in output
    _edit(project_copy / "ipabuild.yaml", "namespace: ipabuild", "namespace: default")
    status, output = _run(project_copy)
    assert status == 2 and "ipabuild.yaml:" in output and "`namespace`" in output


def test_resources_are_checked_in_the_spec(project_copy: Path) -> None:
    spec = project_copy / "services/kdc/service.yaml"
    _edit(spec, "memory_request: 64Mi", "memory_request: 2Gi")
    status, output = _run(project_copy)
    assert status == 2 and "services/kdc/service.yaml" in output
    assert "memory_request 2Gi is above memory_limit 256Mi" in output
    _edit(spec, "memory_request: 2Gi", "memory_request: 64 MB")
    status, output = _run(project_copy)
    assert status == 2 and "not a Kubernetes quantity" in output
    _edit(spec, "memory_request: 64 MB", "memory_request: 100Mi")
    assert _run(project_copy)[0] == 0
    assert "memory: 100Mi" in (project_copy / "kustomize/overlays/split/ldap.yaml").read_text()


def test_port_clash_names_the_service(project_copy: Path) -> None:
    _edit(project_copy / "services/http/service.yaml", "service_port: 443", "service_port: 80")
    status, output = _run(project_copy)
    assert status == 2
    assert "services/http/service.yaml" in output and "service 'http'" in output
    assert "port clash: service port 80/tcp" in output


def test_duplicate_port_name_names_the_service(project_copy: Path) -> None:
    _edit(project_copy / "services/kdc/service.yaml", "name: kpasswd-udp", "name: kpasswd")
    status, output = _run(project_copy)
    assert status == 2 and "service 'kdc'" in output and "name kpasswd" in output


def test_volume_without_path_names_the_service(project_copy: Path) -> None:
    _edit(project_copy / "services/ldap/service.yaml", "{name: data, path: /data}",
          "{name: data}")
    status, output = _run(project_copy)
    assert status == 2
    assert "services/ldap/service.yaml" in output and "volumes.0.path" in output


def test_volume_mounted_over_tmpfs_names_the_service(project_copy: Path) -> None:
    _edit(project_copy / "services/ldap/service.yaml", "{name: data, path: /data}",
          "{name: data, path: /tmp}")
    status, output = _run(project_copy)
    assert status == 2 and "service 'ldap'" in output and "/tmp" in output


def test_unknown_dependency_names_the_service(project_copy: Path) -> None:
    _edit(project_copy / "services/kdc/service.yaml", "depends_on: [ldap]",
          "depends_on: [ldapx]")
    status, output = _run(project_copy)
    assert status == 2 and "service 'kdc'" in output and "ldapx" in output
