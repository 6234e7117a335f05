"""Certificates that renew themselves, proven on a stack of its own whose service
certificates a real Dogtag profile issues valid for minutes (the ca service's test-only
IPABUILD_CERT_VALIDITY: the profiles' range in Dogtag's rangeUnit=minute), so that the
renewer (renewer.py) renews them during the test, with nobody restarting anything:

* 443 and 636 on the server name present new serials (openssl s_client);
* ``kinit -n`` works against the KDC's renewed PKINIT certificate;
* ``ipa cert-request`` works with the renewed RA agent certificate;
* ``ipabuild certs`` shows the new serials and not-after dates, read from each service;
* nothing is lost: a user and a certificate made before are there after.

Renewal restarts ns-slapd and krb5kdc (as upstream's certmonger hooks do), so every
check runs inside a quiet window: when the next renewal is close, the test waits for it
to pass and settle first, instead of racing it.
"""

from __future__ import annotations

import datetime
import json
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.integration.conftest import ROOT, STACK_SERVICES, ipabuild
from tests.integration.stack_client import Client, build_client_image
from tests.integration.test_ipa_api import ipa

VALIDITY = datetime.timedelta(minutes=5)
RENEW_BEFORE = datetime.timedelta(minutes=3)  # so each renews 2 minutes after issuance
POLL = 5  # seconds: how often ldap, kdc and http look for a renewed certificate
SETTLE = 30  # seconds after a renewal for every service to serve it (poll, restart)
SERVICE_CERTS = ("http-tls", "ra-agent", "kdc-pkinit", "ldap-tls")
SERVED = ("echo | openssl s_client -connect ipa.example.test:443 -servername "
          "ipa.example.test 2>/dev/null | openssl x509 -noout -serial | sed 's/^/HTTPS /'; "
          "echo | openssl s_client -connect ipa.example.test:636 2>/dev/null "
          "| openssl x509 -noout -serial | sed 's/^/LDAPS /'")


@pytest.fixture(scope="module")
def short_lived(built: dict[str, dict]) -> Iterator[str]:
    build_client_image()
    name = f"r{uuid.uuid4().hex[:6]}"
    try:
        result = ipabuild("up", "--name", name, *STACK_SERVICES,
                          f"--env=ca:IPABUILD_CERT_VALIDITY={int(VALIDITY.total_seconds())}",
                          f"--env=ca:IPABUILD_RENEW_BEFORE={int(RENEW_BEFORE.total_seconds())}",
                          "--env=ca:IPABUILD_RENEW_CHECK=10", f"--env=IPABUILD_CERT_POLL={POLL}")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        yield name
    finally:
        ipabuild("down", "--name", name, "--volumes")


def certs(stack: str) -> dict[str, dict]:
    """``ipabuild certs --json`` by certificate name."""
    result = ipabuild("certs", "--name", stack, "--json")
    rows = json.loads(result.stdout)
    return {row["name"]: row for row in rows}


def _when(text: str) -> float:
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.UTC).timestamp()


def quiet_window(stack: str, needed: float) -> dict[str, dict]:
    """Wait, if need be, until no renewal is due for ``needed`` seconds and the last one
    has settled; the inventory then. Renewals come every VALIDITY - RENEW_BEFORE, so
    ``needed`` must stay under that less SETTLE."""
    assert needed < (VALIDITY - RENEW_BEFORE).total_seconds() - SETTLE
    deadline = time.time() + 120
    while True:
        rows = certs(stack)
        if any(rows[n]["error"] for n in SERVICE_CERTS):  # the kdc's PKINIT comes on
            assert time.time() < deadline, rows  # a few seconds after `up`
            time.sleep(2)
            continue
        next_due = min(_when(rows[n]["not_after"]) for n in SERVICE_CERTS) \
            - RENEW_BEFORE.total_seconds()
        if next_due - time.time() >= needed:
            return rows
        time.sleep(max(0.0, next_due - time.time()) + SETTLE)


def served_serials(client: Client) -> dict[str, int]:
    out = client.run(SERVED).stdout
    return {line.split()[0]: int(line.split("serial=")[1], 16)
            for line in out.splitlines() if "serial=" in line}


def test_service_certificates_renew_and_are_served(short_lived: str) -> None:
    client = Client(short_lived, ROOT / ".ipabuild" / "secrets" / short_lived)
    user = f"ren{uuid.uuid4().hex[:5]}"
    host = f"ren{uuid.uuid4().hex[:4]}.example.test"
    before = quiet_window(short_lived, 60)
    assert all(not before[n]["error"] for n in before), before
    served_before = served_serials(client)
    assert served_before == {"HTTPS": before["http-tls"]["serial"],
                             "LDAPS": before["ldap-tls"]["serial"]}, (served_before, before)
    made = ipa(client, """
        ipa user-add "$U" --first Re --last Newal >/dev/null
        ipa host-add "$H" --force >/dev/null && ipa service-add "HTTP/$H" --force >/dev/null
        cd /tmp && openssl req -new -newkey rsa:2048 -nodes -keyout k -out r.csr \
            -subj "/O=EXAMPLE.TEST/CN=$H" 2>/dev/null
        ipa cert-request r.csr --principal "HTTP/$H" | sed -n 's/^  Serial number: /SERIAL=/p'
        """, U=user, H=host)
    serial = int(made.split("SERIAL=", 1)[1].split()[0])

    # Each certificate is renewed by itself: every one of them, a new serial and a
    # later not-after, read back from the service that uses it.
    deadline = time.time() + VALIDITY.total_seconds()
    while time.time() < deadline:
        after = certs(short_lived)
        if all(after[n]["serial"] != before[n]["serial"] for n in SERVICE_CERTS):
            break
        time.sleep(POLL)
    renewed = {n: (before[n]["serial"], after[n]["serial"]) for n in SERVICE_CERTS}
    assert all(old != new for old, new in renewed.values()), (renewed, after)
    for name in SERVICE_CERTS:
        assert after[name]["not_after"] > before[name]["not_after"], (name, before, after)
        assert after[name]["renewal"].startswith("renewed"), after[name]

    rows = quiet_window(short_lived, 60)
    served_after = served_serials(client)
    assert served_after == {"HTTPS": rows["http-tls"]["serial"],
                            "LDAPS": rows["ldap-tls"]["serial"]}, (served_after, rows)
    assert served_after["HTTPS"] != served_before["HTTPS"], served_after
    assert served_after["LDAPS"] != served_before["LDAPS"], served_after
    out = ipa(client, """
        kinit -n -X X509_anchors=FILE:/tmp/ipa/ca.crt -c /tmp/anon && klist -c /tmp/anon
        ipa user-show "$U"
        ipa cert-show "$S"
        cd /tmp && openssl req -new -newkey rsa:2048 -nodes -keyout k2 -out r2.csr \
            -subj "/O=EXAMPLE.TEST/CN=$H" 2>/dev/null
        ipa cert-request r2.csr --principal "HTTP/$H" | sed -n 's/^  Serial number: /NEW=/p'
        """, U=user, H=host, S=str(serial))
    assert "WELLKNOWN/ANONYMOUS@WELLKNOWN:ANONYMOUS" in out, out  # anonymous PKINIT
    assert f"User login: {user}" in out, out
    assert f"Serial number: {serial}" in out and "Revoked: False" in out, out
    assert int(out.split("NEW=", 1)[1].split()[0]) > serial, out  # the RA works


def test_status_shows_what_the_renewer_found(short_lived: str) -> None:
    result = ipabuild("status", "--name", short_lived, "--json")
    ca = next(row for row in json.loads(result.stdout) if row["service"] == "ca")
    assert ca["health"] == "healthy", ca
    # the four service certificates, the admin's and Dogtag's four (not the CA's own)
    assert "certificates: 9 tracked" in ca["health_says"], ca


SYSTEM_CERTS = ("ca_ocsp_signing", "ca_audit_signing", "subsystem", "sslserver", "ca_admin")


def test_dogtag_system_certificates_renew_and_the_ca_keeps_working(short_lived: str) -> None:
    """Dogtag's own certificates, renewed by serial through Dogtag and installed while
    Tomcat is stopped (system_certs.py), asked for now (`certs --renew`) as their first
    validity is pkispawn's 720 days: afterwards Tomcat serves the new TLS certificate and
    IPA's API still issues certificates through it."""
    client = Client(short_lived, ROOT / ".ipabuild" / "secrets" / short_lived)
    before = quiet_window(short_lived, 60)
    result = ipabuild("certs", "--name", short_lived, "--json", "--renew", ",".join(SYSTEM_CERTS))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    after = {row["name"]: row for row in json.loads(result.stdout)}
    for name in SYSTEM_CERTS:
        assert after[name]["serial"] != before[name]["serial"], (name, before[name], after[name])
        assert after[name]["subject"] == before[name]["subject"], (before[name], after[name])
        assert after[name]["renewal"].startswith("renewed"), after[name]
    served = client.run("echo | openssl s_client -connect ca.example.test:8443 2>/dev/null "
                        "| openssl x509 -noout -serial").stdout
    assert int(served.split("serial=")[1], 16) == after["sslserver"]["serial"], served
    host = f"sys{uuid.uuid4().hex[:4]}.example.test"
    out = ipa(client, """
        ipa host-add "$H" --force >/dev/null && ipa service-add "HTTP/$H" --force >/dev/null
        cd /tmp && openssl req -new -newkey rsa:2048 -nodes -keyout k -out r.csr \
            -subj "/O=EXAMPLE.TEST/CN=$H" 2>/dev/null
        ipa cert-request r.csr --principal "HTTP/$H"
        """, H=host)
    assert f"Subject: CN={host},O=EXAMPLE.TEST" in out, out
    # The renewer now talks to Dogtag with the renewed admin certificate.
    again = ipabuild("certs", "--name", short_lived, "--json", "--renew", "http-tls")
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    rows = {row["name"]: row for row in json.loads(again.stdout)}
    assert rows["ca_admin"]["serial"] == after["ca_admin"]["serial"], rows["ca_admin"]
