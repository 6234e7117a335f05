"""The image contract (DESIGN.md), checked on every split image as built."""

from __future__ import annotations

from pathlib import Path

import pytest

from ipabuild.spec.load import load_project, load_service
from tests.integration.conftest import ROOT, SERVICES
from tests.integration.layers import layer_tarballs, secret_files, setid_files
from tests.integration.podman_cli import image_config


class LayerCache(dict):
    """Saves an image's layers on first use (podman save is the slow part)."""

    def __init__(self, built: dict[str, dict], factory: pytest.TempPathFactory) -> None:
        super().__init__()
        self.built, self.factory = built, factory

    def __missing__(self, service: str) -> list[Path]:
        tarballs = layer_tarballs(self.built[service]["name"],
                                  self.factory.mktemp(service) / "oci")
        self[service] = tarballs
        return tarballs


@pytest.fixture(scope="module")
def layers(built: dict[str, dict], tmp_path_factory: pytest.TempPathFactory) -> LayerCache:
    return LayerCache(built, tmp_path_factory)


@pytest.mark.parametrize("service", SERVICES)
def test_user_is_numeric_and_not_root(built: dict[str, dict], service: str) -> None:
    user = image_config(built[service]["name"])["Config"]["User"]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0, user
    assert gid == "0", user


@pytest.mark.parametrize("service", SERVICES)
def test_no_setuid_or_setgid_file_in_any_layer(layers: LayerCache, service: str) -> None:
    assert setid_files(layers[service]) == []


@pytest.mark.parametrize("service", SERVICES)
def test_no_private_key_keytab_or_password_in_any_layer(
        layers: LayerCache, service: str) -> None:
    assert secret_files(layers[service]) == []


@pytest.mark.parametrize("service", SERVICES)
def test_no_secret_in_environment(built: dict[str, dict], service: str) -> None:
    env = image_config(built[service]["name"])["Config"].get("Env") or []
    for entry in env:
        name = entry.split("=", 1)[0].upper()
        assert not any(word in name for word in ("PASSWORD", "SECRET", "TOKEN", "KEY")), entry


@pytest.mark.parametrize("service", SERVICES)
def test_healthcheck_and_unprivileged_ports(built: dict[str, dict], service: str) -> None:
    config = image_config(built[service]["name"])
    assert (config.get("Healthcheck") or {}).get("Test"), "no HEALTHCHECK"
    ports = [int(p.split("/")[0]) for p in (config["Config"].get("ExposedPorts") or {})]
    # Below 1024 only where the spec lowers net.ipv4.ip_unprivileged_port_start in the
    # service's own network namespace (no capability is ever added).
    spec = load_service(ROOT, service, load_project(ROOT))
    start = int(spec.sysctls.get("net.ipv4.ip_unprivileged_port_start", 1024))
    assert ports and all(p >= start for p in ports), (ports, start)


def test_detector_catches_what_it_should(tmp_path: Path) -> None:
    """The scanners are only evidence if they can fail: feed them a bad layer."""
    import io
    import tarfile

    tarball = tmp_path / "layer.tar"
    key = (b"-----BEGIN RSA PRIVATE KEY-----\n" + b"QUJD" * 16
           + b"\n-----END RSA PRIVATE KEY-----\n")
    with tarfile.open(tarball, "w") as archive:
        for name, data, mode in [("usr/bin/su", b"x", 0o4755),
                                 ("etc/ssl/private/k.pem",
                                  key, 0o600),
                                 ("etc/krb5.keytab", b"\x05\x02", 0o600)]:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            archive.addfile(info, io.BytesIO(data))
    assert [f.path for f in setid_files([tarball])] == ["usr/bin/su"]
    assert {f.path for f in secret_files([tarball])} == {"etc/ssl/private/k.pem",
                                                         "etc/krb5.keytab"}
