"""Build stages for real: FreeIPA's framework is built from Debian's source package once,
images copy its artifacts, and the cache keeps the two apart (a consumer's template
change never rebuilds the stage; a stage change rebuilds it and then its consumers)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT, ipabuild
from tests.integration.podman_cli import sh

TAG = "stagetest"
IPADB = "/usr/lib/x86_64-linux-gnu/krb5/plugins/kdb/ipadb.so"
STAGE_ROOT = "/opt/freeipa"
CHANGED_STAGES: list[str] = []  # stage images only this test made: removed afterwards


def images(root: Path, *services: str) -> dict[str, dict]:
    result = ipabuild("images", "--service", ",".join(services), "--tag", TAG, "--json",
                      root=root)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return {image["service"]: image for image in json.loads(result.stdout)["images"]}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A project copy whose kdc image copies ipa-kdb from the framework stage."""
    root = tmp_path_factory.mktemp("stage")
    shutil.copy(ROOT / "ipabuild.yaml", root / "ipabuild.yaml")
    shutil.copytree(ROOT / "services", root / "services")
    spec = root / "services/kdc/service.yaml"
    spec.write_text(spec.read_text().replace(
        "    base: trixie\n",
        "    base: trixie\n    copy_from:\n"
        f"      - {{stage: framework, src: {STAGE_ROOT}{IPADB}, dest: {IPADB}}}\n", 1))
    yield root
    for service in ("framework", "kdc"):
        sh(["podman", "rmi", "-f", f"localhost/ipabuild/{service}:{TAG}"], check=False)
    for image_id in CHANGED_STAGES:
        sh(["podman", "rmi", "-f", image_id], check=False)


def test_framework_stage_holds_freeipas_server_parts(project: Path) -> None:
    built = images(project, "framework")
    assert built["framework"]["status"] in {"built", "cached"}
    listing = sh(["podman", "run", "--rm", "--entrypoint", "bash", built["framework"]["name"],
                  "-c", f"cd {STAGE_ROOT} && ls {IPADB[1:]} "
                        "usr/lib/x86_64-linux-gnu/dirsrv/plugins/libipa_pwd_extop.so "
                        "usr/share/ipa/updates usr/lib/python3/dist-packages/ipaserver "
                        "usr/lib/python3/dist-packages/pki >/dev/null && echo ok"])
    assert listing.stdout.strip() == "ok", listing.stderr


def test_consumer_copies_the_stage_and_caches_apart(project: Path) -> None:
    first = images(project, "kdc")
    assert list(first) == ["framework", "kdc"], "the stage is resolved before its consumer"
    assert first["framework"]["status"] in {"built", "cached"}
    probe = sh(["podman", "run", "--rm", "--entrypoint", "test", first["kdc"]["name"],
                "-f", IPADB], check=False)
    assert probe.returncode == 0, "ipadb.so did not reach the consumer image"

    # A consumer's own template changes: only the consumer is rebuilt.
    acl = project / "services/kdc/kadm5.acl.j2"
    acl.write_text(acl.read_text() + "# changed by test_stage\n")
    second = images(project, "kdc")
    assert second["framework"]["status"] == "cached"
    assert second["kdc"]["status"] == "built"
    assert second["framework"]["image_id"] == first["framework"]["image_id"]

    # The stage changes: it is rebuilt once, then the consumer (new stage tag in COPY).
    script = project / "services/framework/build-framework.sh"
    script.write_text(script.read_text() + "# changed by test_stage\n")
    third = images(project, "kdc")
    CHANGED_STAGES.append(third["framework"]["image_id"])
    assert third["framework"]["status"] == "built"
    assert third["framework"]["image_id"] != second["framework"]["image_id"]
    assert third["kdc"]["status"] == "built"
    again = images(project, "kdc")
    assert [i["status"] for i in again.values()] == ["cached", "cached"]
