"""Each image under three random UIDs with GID 0 (OpenShift restricted-v2), read-only root,
all capabilities dropped. ldap serves a real LDAP client; the others say what they await."""

from __future__ import annotations

import subprocess

import pytest

from tests.integration.podman_cli import (
    Sandbox,
    host_port,
    is_running,
    random_uid,
    wait_for_log,
    wait_healthy,
)

UIDS = [random_uid() for _ in range(3)]
DM_PASSWORD = "Test-DM-password-1"
SUFFIX = "dc=example,dc=test"


def ldapsearch(port: int, base: str, *extra: str) -> subprocess.CompletedProcess:
    """The real OpenLDAP client on the host, binding as Directory Manager."""
    return subprocess.run(
        ["ldapsearch", "-LLL", "-x", "-H", f"ldap://127.0.0.1:{port}",
         "-D", "cn=Directory Manager", "-w", DM_PASSWORD, "-b", base, *extra],
        capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.parametrize("uid", UIDS)
def test_ldap_creates_instance_and_restarts_from_volume(
        built: dict[str, dict], sandbox: Sandbox, uid: int) -> None:
    image = built["ldap"]["name"]
    secret = sandbox.secret("dm", DM_PASSWORD)
    volume = sandbox.volume()
    first = sandbox.run(image, uid, secrets={"ldap-dm-password": secret},
                        volumes={volume: "/data"}, extra=["-p", "127.0.0.1::3389"])
    wait_healthy(first, timeout=60)  # the image's healthcheck start period
    port = host_port(first, 3389)
    found = ldapsearch(port, f"cn=users,cn=accounts,{SUFFIX}", "-s", "base", "dn")
    assert found.returncode == 0, found.stderr
    assert f"dn: cn=users,cn=accounts,{SUFFIX}" in found.stdout
    schema = ldapsearch(port, "cn=schema", "-s", "base", "objectClasses")
    assert "krbRealmContainer" in schema.stdout, "Kerberos schema not loaded"
    add = subprocess.run(
        ["ldapadd", "-x", "-H", f"ldap://127.0.0.1:{port}", "-D", "cn=Directory Manager",
         "-w", DM_PASSWORD],
        input=(f"dn: cn=persisted,cn=groups,cn=accounts,{SUFFIX}\n"
               "objectClass: top\nobjectClass: nsContainer\ncn: persisted\n"),
        capture_output=True, text=True, timeout=30, check=False)
    assert add.returncode == 0, add.stderr
    subprocess.run(["podman", "stop", "-t", "10", first], check=True, capture_output=True)

    second = sandbox.run(image, uid, secrets={"ldap-dm-password": secret},
                         volumes={volume: "/data"}, extra=["-p", "127.0.0.1::3389"])
    seconds = wait_healthy(second, timeout=20)
    again = ldapsearch(host_port(second, 3389), f"cn=persisted,cn=groups,cn=accounts,{SUFFIX}",
                       "-s", "base", "dn")
    assert again.returncode == 0 and "cn=persisted" in again.stdout, again.stderr
    assert seconds < 20


def test_ldap_refuses_a_volume_of_another_uid(built: dict[str, dict], sandbox: Sandbox) -> None:
    image = built["ldap"]["name"]
    secret = sandbox.secret("dm", DM_PASSWORD)
    volume = sandbox.volume()
    first = sandbox.run(image, UIDS[0], secrets={"ldap-dm-password": secret},
                        volumes={volume: "/data"})
    wait_healthy(first, timeout=60)
    subprocess.run(["podman", "stop", "-t", "10", first], check=True, capture_output=True)
    other = sandbox.run(image, UIDS[0] + 1, secrets={"ldap-dm-password": secret},
                        volumes={volume: "/data"})
    output = wait_for_log(other, "cannot use it", timeout=20)
    assert "re-own the volume" in output


def test_ldap_without_its_secret_says_so(built: dict[str, dict], sandbox: Sandbox) -> None:
    container = sandbox.run(built["ldap"]["name"], UIDS[1], volumes={sandbox.volume(): "/data"})
    output = wait_for_log(container, "FATAL", timeout=20)
    assert "secret 'ldap-dm-password' missing" in output


WAITING = {
    # service -> (secrets it needs, what its log must say while ldap/kdc are absent)
    "kdc": ({"ldap-dm-password": "x", "kdc-master-key": "y"}, "waiting for ldap:3389"),
    "http": ({"http-service-password": "z", "http-session-key": "s"}, "waiting for kdc:8088"),
    # The CA's first prerequisite is its init step (an empty volume here); once
    # initialised, Tomcat's ca context waits for ldap itself (WaitForDatabase).
    "ca": ({"ldap-dm-password": "x", "ca-admin-password": "y", "ca-pkcs12-password": "z"},
           "CA not initialised"),
}


@pytest.mark.parametrize("uid", UIDS)
@pytest.mark.parametrize("service", sorted(WAITING))
def test_dependent_service_reports_what_it_waits_for(
        built: dict[str, dict], sandbox: Sandbox, service: str, uid: int) -> None:
    secrets_wanted, message = WAITING[service]
    secrets = {name: sandbox.secret(name, value) for name, value in secrets_wanted.items()}
    network = sandbox.network()  # no ldap/kdc on it: the service must wait, not crash
    container = sandbox.run(built[service]["name"], uid, secrets=secrets,
                            extra=["--network", network])
    wait_for_log(container, message, timeout=30)
    assert is_running(container), "it should keep waiting, not exit"


@pytest.mark.parametrize(("prepare", "message"), [
    ("", "no IPA CA certificate at /etc/ipa/ca.crt"),
    ("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=x "
     "-keyout /tmp/k -out /tmp/ipabuild-http/ca.crt 2>/dev/null", "no RA agent certificate"),
])
def test_http_health_check_names_what_is_missing(
        built: dict[str, dict], prepare: str, message: str) -> None:
    """http's health check (what `ipabuild up` quotes when http stays unhealthy) names
    the missing piece: the IPA CA's certificate, then the RA agent's."""
    script = f"mkdir -p /tmp/ipabuild-http && {prepare + ' && ' if prepare else ''}" \
             "/usr/local/bin/ipabuild-http-health"
    result = subprocess.run(
        ["podman", "run", "--rm", "--read-only", "--tmpfs", "/tmp", "--user",
         f"{random_uid()}:0", "--cap-drop", "all", "--entrypoint", "bash",
         built["http"]["name"], "-c", script],
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert message in result.stdout, result.stdout + result.stderr
