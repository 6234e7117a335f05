"""An upgrade in place: images rebuilt from changed specs under a new tag start on the
volumes the previous tag made, and keep every record (directory entries, principals,
certificates and the CA's serial numbers), as freeipa-container's upgrade tests check.
The ldap image of the new tag carries one more FreeIPA update file: that it ran on the
old volume shows a newer image updates an older directory."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import pytest
import yaml

from tests.integration.conftest import ROOT, ipabuild
from tests.integration.podman_cli import sh
from tests.integration.stack_client import Client
from tests.integration.test_ipa_api import ipa

NEW_TAG = f"upgrade-{uuid.uuid4().hex[:6]}"
SERVICES = ("ldap", "kdc", "ca", "http", "server")
PROBE = "cn=upgrade-probe,cn=etc,dc=example,dc=test"
PROBE_UPDATE = """# test_upgrade.py: one more update file in the newer ldap image
dn: cn=upgrade-probe,cn=etc,$SUFFIX
default:objectClass: top
default:objectClass: nsContainer
default:cn: upgrade-probe
"""


@pytest.fixture(scope="module")
def newer_images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The split images built under NEW_TAG from a copy of the specs in which every
    service's environment changed and ldap gained an update file."""
    root = tmp_path_factory.mktemp("newer-specs")
    shutil.copy(ROOT / "ipabuild.yaml", root / "ipabuild.yaml")
    shutil.copytree(ROOT / "services", root / "services")
    for name in SERVICES:
        path = root / "services" / name / "service.yaml"
        spec = yaml.safe_load(path.read_text())
        spec.setdefault("environment", {})["IPABUILD_UPGRADE_PROBE"] = NEW_TAG
        if name == "ldap":
            (path.parent / "99-upgrade-probe.update").write_text(PROBE_UPDATE)
            spec["files"].append({"src": "99-upgrade-probe.update",
                                  "dest": "/usr/share/ipa/updates/99-upgrade-probe.update",
                                  "mode": "0644"})
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
    built = ipabuild("images", "--tag", NEW_TAG, "--json", "--service", ",".join(SERVICES),
                     root=root)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    images = {i["service"]: i for i in json.loads(built.stdout)["images"]}
    assert all(images[name]["status"] == "built" for name in SERVICES), images
    try:
        yield NEW_TAG
    finally:
        for name in (*SERVICES, "framework"):
            subprocess.run(["podman", "rmi", f"localhost/ipabuild/{name}:{NEW_TAG}"],
                           capture_output=True, check=False)


def _image_of(stack: str, service: str) -> str:
    return sh(["podman", "inspect", "--format", "{{.ImageName}}",
               f"ipabuild-{stack}-{service}"]).stdout.strip()


def test_new_tag_keeps_the_old_tags_data(stack: str, client: Client, newer_images: str) -> None:
    user, group = f"up{uuid.uuid4().hex[:5]}", f"upg{uuid.uuid4().hex[:5]}"
    host = f"upg{uuid.uuid4().hex[:4]}.example.test"
    script = """
        ipa user-add "$U" --first Up --last Grade >/dev/null
        ipa group-add "$G" >/dev/null && ipa group-add-member "$G" --users "$U" >/dev/null
        ipa host-add "$H" --force >/dev/null && ipa service-add "HTTP/$H" --force >/dev/null
        cd /tmp && openssl req -new -newkey rsa:2048 -nodes -keyout k -out r.csr \
            -subj "/O=EXAMPLE.TEST/CN=$H" 2>/dev/null
        ipa cert-request r.csr --principal "HTTP/$H" | sed -n 's/^  Serial number: /SERIAL=/p'
        """
    before = ipa(client, script, U=user, G=group, H=host)
    assert "SERIAL=" in before, before[-3000:]  # what ipa said instead of a certificate
    serial = int(before.split("SERIAL=", 1)[1].split()[0])
    old_image = _image_of(stack, "ldap")
    try:
        assert ipabuild("down", "--name", stack).returncode == 0
        up = ipabuild("up", "--name", stack, "--tag", newer_images)
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-3000:]
        assert all(_image_of(stack, name).endswith(f":{newer_images}") for name in SERVICES)
        after = ipa(client, """
            ipa user-show "$U" && ipa group-show "$G" && ipa service-show "HTTP/$H"
            ipa cert-show "$S"
            cd /tmp && openssl req -new -newkey rsa:2048 -nodes -keyout k -out r.csr \
                -subj "/O=EXAMPLE.TEST/CN=$H" 2>/dev/null
            ipa cert-request r.csr --principal "HTTP/$H" | sed -n 's/^  Serial number: /NEW=/p'
            ldapsearch -LLL -x -H ldap://ldap.example.test:3389 -D "cn=Directory Manager" \
                -w "$DM" -b "$P" -s base dn
            """, U=user, G=group, H=host, S=str(serial), P=PROBE,
            DM=client.secret("ldap-dm-password"))
    finally:
        ipabuild("down", "--name", stack)
        restored = ipabuild("up", "--name", stack)
    assert f"User login: {user}" in after and f"Member users: {user}" in after, after
    assert f"Principal name: HTTP/{host}@EXAMPLE.TEST" in after, after
    assert f"Serial number: {serial}" in after and "Revoked: False" in after, after
    # The CA's serial counter survived: the next certificate continues after the old one.
    assert int(after.split("NEW=", 1)[1].split()[0]) > serial, after
    # The newer ldap image's extra update file ran on the volume the old image made.
    assert f"dn: {PROBE}" in after.replace("\n ", ""), after
    assert restored.returncode == 0, restored.stderr[-3000:]
    assert _image_of(stack, "ldap") == old_image
