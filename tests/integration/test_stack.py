"""The split stack as a working identity system, proven with real clients from a separate
container: kinit (UDP, TCP, KDC proxy), SASL/GSSAPI to 389-ds, SPNEGO to httpd,
persistence across down/up and after kill -9 of each daemon."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.integration.conftest import ipabuild
from tests.integration.podman_cli import sh
from tests.integration.stack_client import KINIT_ADMIN, Client, admin_env

SUFFIX = "dc=example,dc=test"


def test_status_reports_every_service_healthy_and_non_root(
        stack: str, stack_uids: dict[str, int]) -> None:
    """Every service healthy, each split one under the random host UID it was given."""
    result = ipabuild("status", "--name", stack, "--json")
    assert result.returncode == 0, result.stdout
    rows = {row["service"]: row for row in json.loads(result.stdout)}
    for service in ("ldap", "kdc", "http", "ca"):
        assert rows[service]["health"] == "healthy"
        assert rows[service]["uid_on_host"] not in (None, 0)
        assert rows[service]["host_pid"] > 0
    for service, uid in stack_uids.items():
        assert rows[service]["uid_on_host"] == uid == rows[service]["uid_in_container"]
    # GID 0, as OpenShift runs every container, and no process is UID 0 anywhere: the
    # CA's files (made by its init under the same random UID) are its own.
    ca = subprocess.run(["podman", "exec", f"ipabuild-{stack}-ca", "sh", "-c",
                         "id -u; id -g; stat -c %u /etc/pki/pki-tomcat/ca/CS.cfg"],
                        capture_output=True, text=True, check=True).stdout.split()
    assert ca[1] == "0" and ca[0] == ca[2] != "0", ca


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_kinit_over_udp_and_tcp(client: Client, transport: str) -> None:
    result = client.run(f"export KRB5_TRACE=/dev/stderr; {KINIT_ADMIN} && klist",
                        env=admin_env(client), udp_limit=1 if transport == "tcp" else 65535)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "krbtgt/EXAMPLE.TEST@EXAMPLE.TEST" in result.stdout
    kind = "stream" if transport == "tcp" else "dgram"
    assert "Received answer" in result.stderr and f"from {kind} " in result.stderr


def test_principal_is_an_entry_in_389ds(client: Client) -> None:
    result = client.run(
        'ldapsearch -LLL -x -H ldap://ldap.example.test:3389 -D "cn=Directory Manager" '
        f'-w "$DM" -b {SUFFIX} "(krbPrincipalName=admin@EXAMPLE.TEST)" dn',
        env={"DM": client.secret("ldap-dm-password")})
    assert result.returncode == 0, result.stderr
    assert f"dn: uid=admin,cn=users,cn=accounts,{SUFFIX}" in result.stdout


def test_sasl_gssapi_bind_maps_to_the_user_entry(client: Client) -> None:
    result = client.run(f"{KINIT_ADMIN} && ldapwhoami -N -Y GSSAPI -H ldap://ldap.example.test:3389",
                        env=admin_env(client))
    assert result.returncode == 0, result.stderr
    assert f"dn: uid=admin,cn=users,cn=accounts,{SUFFIX}" in result.stdout


def test_spnego_returns_the_principal_and_401_without_ticket(client: Client) -> None:
    url = "https://http.example.test/ipa/whoami"
    result = client.run(f"{KINIT_ADMIN} && curl -sSk --negotiate -u : {url}; kdestroy; "
                        f"curl -sk -o /dev/null -w 'anon:%{{http_code}}' {url}",
                        env=admin_env(client))
    assert "admin@EXAMPLE.TEST" in result.stdout, result.stderr
    assert "anon:401" in result.stdout


def test_kinit_through_the_kdc_proxy(client: Client) -> None:
    result = client.run(
        # The proxy's TLS anchor: the IPA CA, which issued http's certificate (the
        # toolbox pinned it at start: the top of the chain http sends).
        "cp /tmp/ipa/ca.crt /tmp/http.pem && "
        f"export KRB5_TRACE=/dev/stderr; {KINIT_ADMIN} && klist",
        kdc="https://http.example.test/KdcProxy", env=admin_env(client))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "krbtgt/EXAMPLE.TEST" in result.stdout
    assert "Sending HTTPS request" in result.stderr


@pytest.fixture(scope="module")
def issued_serial(stack: str, client: Client, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Issue a certificate from Dogtag with the real pki CLI; returns its serial."""
    inputs = tmp_path_factory.mktemp("ca-client")
    sh(["podman", "cp", f"ipabuild-{stack}-ca:/etc/pki/ipabuild-client/ca_admin_cert.p12",
        str(inputs / "admin.p12")])
    (inputs / "p12pw").write_text(client.secret("ca-pkcs12-password"))
    script = Path(__file__).parent / "client" / "issue-cert.sh"
    result = subprocess.run(
        ["podman", "run", "--rm", "--network", f"ipabuild-{stack}", "-v", f"{inputs}:/in:ro",
         "-v", f"{script}:/issue-cert.sh:ro", "--user", "0", "--entrypoint", "bash",
         "localhost/ipabuild/ca:latest", "/issue-cert.sh"],
        capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, (result.stdout[-2000:] + result.stderr[-2000:] + "\n"
                                    + _logs_tail(stack, "http"))
    assert "cert.pem: OK" in result.stdout
    return result.stdout.rsplit("SERIAL=", 1)[1].split()[0]


def test_ca_issues_a_certificate_openssl_verifies(issued_serial: str) -> None:
    assert issued_serial.startswith("0x") and int(issued_serial, 16) > 1


def _serial_status(client: Client, serial: str) -> str:
    """The HTTP status of a certificate lookup through http's /ca proxy."""
    result = client.run(f"curl -sk -o /dev/null -w '%{{http_code}}' "
                        f"https://http.example.test/ca/rest/certs/{serial}")
    return result.stdout.strip()


def _serial_known(client: Client, serial: str) -> bool:
    return _serial_status(client, serial) == "200"


def eventually(check, timeout: float) -> None:  # type: ignore[no-untyped-def]
    """Retry ``check`` until it passes or ``timeout`` seconds have gone by."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            check()
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(3)


def _check_identity(client: Client) -> None:
    test_spnego_returns_the_principal_and_401_without_ticket(client)
    test_sasl_gssapi_bind_maps_to_the_user_entry(client)


def test_data_survives_down_and_up(stack: str, client: Client, issued_serial: str) -> None:
    entry = f"cn=persist-{uuid.uuid4().hex[:6]},cn=groups,cn=accounts,{SUFFIX}"
    added = client.run(
        'printf "dn: %s\\nobjectClass: top\\nobjectClass: nsContainer\\n" "$ENTRY" '
        '| ldapadd -x -H ldap://ldap.example.test:3389 -D "cn=Directory Manager" -w "$DM"',
        env={"DM": client.secret("ldap-dm-password"), "ENTRY": entry})
    assert added.returncode == 0, added.stderr
    down = ipabuild("down", "--name", stack)
    assert down.returncode == 0 and "removed" in down.stdout
    started = time.monotonic()
    up = ipabuild("up", "--name", stack)
    assert up.returncode == 0, up.stderr[-3000:]
    print(f"up on existing volumes: {time.monotonic() - started:.1f}s")
    found = client.run(
        'ldapsearch -LLL -x -H ldap://ldap.example.test:3389 -D "cn=Directory Manager" '
        '-w "$DM" -b "$ENTRY" -s base dn',
        env={"DM": client.secret("ldap-dm-password"), "ENTRY": entry})
    assert entry in found.stdout.replace("\n ", ""), found.stderr
    _check_identity(client)

    def certificate_kept() -> None:
        # A lost record answers 404 for good: the window only absorbs a slow first
        # answer through the proxy, it cannot hide a lost certificate.
        status = _serial_status(client, issued_serial)
        assert status == "200", (f"certificate {issued_serial} after down/up: HTTP {status}"
                                 f"\n{_logs_tail(stack, 'http')}{_logs_tail(stack, 'ca')}")
    eventually(certificate_kept, timeout=45)


def _logs_tail(stack: str, service: str) -> str:
    logs = sh(["podman", "logs", "--tail", "15", f"ipabuild-{stack}-{service}"], check=False)
    return f"--- {service} log ---\n{logs.stdout}{logs.stderr}\n"


@pytest.mark.parametrize("service", ["ldap", "kdc", "http", "ca"])
def test_kill_9_of_the_daemon_then_restart(stack: str, client: Client, service: str) -> None:
    container = f"ipabuild-{stack}-{service}"
    # A user made through FreeIPA's API before the kill must be there after it.
    user = f"k9{service}{uuid.uuid4().hex[:4]}"
    made = client.run(KINIT_ADMIN + ' && ipa user-add "$U" --first Kill --last Nine',
                      env={**admin_env(client), "U": user})
    assert made.returncode == 0, made.stdout[-2000:] + made.stderr[-2000:]
    def restarts() -> int:
        return int(sh(["podman", "inspect", "--format", "{{.RestartCount}}", container]
                      ).stdout)
    before = restarts()
    init_pid = int(sh(["podman", "inspect", "--format", "{{.State.Pid}}", container]).stdout)
    daemons = [int(p) for p in Path(f"/proc/{init_pid}/task/{init_pid}/children")
               .read_text().split()]
    assert daemons, "no daemon under the container's init"
    os.kill(daemons[0], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while restarts() == before:  # the restart policy acts by itself; nothing else races it
        assert time.monotonic() < deadline, f"podman did not restart {container}"
        time.sleep(0.25)
    # Every service, the CA included, comes back by the restart policy alone: the CA no
    # longer has a private user namespace, after whose restart podman 4.3 left it
    # "created" (podman #21477), and `ipabuild up` had to make it again.
    deadline = time.monotonic() + 120
    while subprocess.run(["podman", "healthcheck", "run", container],
                         capture_output=True, check=False).returncode != 0:
        assert time.monotonic() < deadline, f"{container} not healthy after restart"
        time.sleep(0.5)
    # The KDC's open LDAP connection to the killed ldap dies silently (new address, no
    # RST): its first request after the restart waits for TCP to give up (~25 s here).
    eventually(lambda: _check_identity(client), timeout=90)

    def user_kept() -> None:
        shown = client.run(KINIT_ADMIN + ' && ipa user-show "$U"',
                           env={**admin_env(client), "U": user})
        assert f"User login: {user}" in shown.stdout, shown.stdout + shown.stderr
    eventually(user_kept, timeout=90)
    if service == "ca":
        def ca_answers() -> None:
            assert _serial_known(client, "0x1"), "the CA does not answer through /ca"
        eventually(ca_answers, timeout=90)


def _container_ids(stack: str) -> dict[str, str]:
    return {service: sh(["podman", "inspect", "--format", "{{.Id}}",
                         f"ipabuild-{stack}-{service}"], check=False).stdout.strip()
            for service in ("ldap", "kdc", "ca", "http", "server")}


def _published(stack: str, service: str) -> dict[str, int]:
    """Container port/protocol → host port, from podman's inspect."""
    found = json.loads(sh(["podman", "inspect", f"ipabuild-{stack}-{service}"]).stdout)
    ports = found[0]["NetworkSettings"]["Ports"] or {}
    return {port: int(bound[0]["HostPort"]) for port, bound in ports.items() if bound}


def test_up_remakes_a_half_started_stack_and_keeps_what_is_healthy(
        stack: str, client: Client) -> None:
    """A stack left half-started (a container removed, one stopped by hand, as an
    interrupted `up` or a crash loop leaves it): `up` again makes only those, keeps the
    healthy ones running untouched, and the realm answers; a further `up` keeps all."""
    before = _container_ids(stack)
    ports = {service: _published(stack, service) for service in ("kdc", "http")}
    # The stack's recorded host ports (stack.hostports): one per container port, TCP and
    # UDP alike, below the kernel's ephemeral range.
    assert ports["kdc"]["8088/tcp"] == ports["kdc"]["8088/udp"]
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    assert all(port >= 20000 and not low <= port <= high
               for each in ports.values() for port in each.values()), ports
    sh(["podman", "rm", "-f", "-t", "5", f"ipabuild-{stack}-http"])
    sh(["podman", "stop", "-t", "5", f"ipabuild-{stack}-kdc"])
    up = ipabuild("up", "--name", stack)
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    after = _container_ids(stack)
    assert after["ldap"] == before["ldap"] and after["ca"] == before["ca"], up.stderr
    assert after["kdc"] != before["kdc"] and after["http"] not in ("", before["http"])
    # Made again on the same host ports: a client's krb5.conf stays right.
    assert {service: _published(stack, service) for service in ports} == ports
    for service in ("ldap", "ca"):
        assert f"{service}: already healthy with this image and configuration: kept" \
            in up.stderr
    ping = client.run(KINIT_ADMIN + " && ipa ping", env=admin_env(client))
    assert ping.returncode == 0 and "IPA server version" in ping.stdout, ping.stderr[-2000:]
    again = ipabuild("up", "--name", stack)
    assert again.returncode == 0, again.stderr[-2000:]
    kept = again.stderr.count("already healthy with this image and configuration: kept")
    assert kept == len(after), again.stderr[-2000:]  # every service of the stack
    assert _container_ids(stack) == after


def test_missing_down_fails_clearly() -> None:
    missing = ipabuild("down", "--name", f"nosuch{uuid.uuid4().hex[:6]}")
    assert missing.returncode == 2
    assert "no stack named" in missing.stderr
