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
from tests.integration.podman_cli import sh
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
    ``needed`` must stay under that less SETTLE, and the tests that need the longest
    windows come before the one that renews a service certificate by hand (which puts it
    out of step with the others, shortening every later window)."""
    assert needed < (VALIDITY - RENEW_BEFORE).total_seconds() - SETTLE
    deadline = time.time() + 120
    give_up = time.time() + 3 * VALIDITY.total_seconds()  # renewals drifted apart
    while True:
        assert time.time() < give_up, f"no quiet window of {needed}s: {certs(stack)}"
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
    assert "SERIAL=" in made, made[-3000:]  # what ipa said instead of a certificate
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
    # the four service certificates, the admin's, Dogtag's four and the CA's own
    assert "certificates: 10 tracked" in ca["health_says"], ca


def test_the_ca_certificate_renews_and_every_consumer_trusts_the_new_one(short_lived: str) -> None:
    """The IPA CA's own certificate, renewed by serial through Dogtag for another 20 years
    (the agent lets it run past the old one's end: system_certs.extend_ca_validity),
    installed while Tomcat is stopped and published beside the old one: clients that
    trust only the new one reach 443, 636 and 8443, get PKINIT from the KDC, and
    certificates issued afterwards chain to it."""
    client = Client(short_lived, ROOT / ".ipabuild" / "secrets" / short_lived)
    before = quiet_window(short_lived, 80)
    result = ipabuild("certs", "--name", short_lived, "--json", "--renew", "ca_signing")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    after = {row["name"]: row for row in json.loads(result.stdout)}
    old, new = before["ca_signing"], after["ca_signing"]
    assert new["serial"] != old["serial"] and new["subject"] == old["subject"], (old, new)
    assert new["not_after"] > old["not_after"] and new["days_left"] > 7300, (old, new)
    assert new["renewal"].startswith("renewed"), new
    # Published beside the old one, where clients (ipa-certupdate) and the services read it.
    listed = client.run(
        "ldapsearch -LLL -x -H ldap://ipa.example.test -o ldif-wrap=no -b "
        "'cn=CAcert,cn=ipa,cn=etc,dc=example,dc=test' -s base 'cACertificate;binary' "
        "| sed -n 's/^cACertificate;binary:: //p' | while read -r v; do echo \"$v\" "
        "| base64 -d | openssl x509 -inform DER -noout -serial; done").stdout
    assert sorted(int(line.split("=")[1], 16) for line in listed.split()) == \
        sorted([old["serial"], new["serial"]]), listed
    # http serves the new one first at /ipa/config/ca.crt once it has looked (POLL).
    deadline, first = time.time() + SETTLE + POLL, ""
    while time.time() < deadline:
        first = client.run("curl -sSf http://ipa.example.test/ipa/config/ca.crt -o /tmp/ca.crt"
                           " && openssl x509 -in /tmp/ca.crt -out /tmp/new-ca.pem"
                           " && openssl x509 -in /tmp/new-ca.pem -noout -serial").stdout
        if first.startswith("serial=") and int(first.split("=")[1], 16) == new["serial"]:
            break
        time.sleep(2)
    assert int(first.split("=")[1], 16) == new["serial"], first
    # The kdc too, which restarts krb5kdc to take the new anchors (a fraction of a second):
    # wait for that restart to be over rather than race it.
    anchors = ""
    while time.time() < deadline + POLL:
        anchors = sh(["podman", "exec", f"ipabuild-{short_lived}-kdc", "openssl", "x509",
                      "-in", "/tmp/ipabuild-kdc/ca.pem", "-noout", "-serial"], check=False).stdout
        if anchors.startswith("serial=") and int(anchors.split("=")[1], 16) == new["serial"]:
            break
        time.sleep(1)
    assert int(anchors.split("=")[1], 16) == new["serial"], anchors
    time.sleep(2)
    # Trusting only the new certificate (each client run is a new container, so the
    # script fetches it again): every TLS endpoint, PKINIT, and a new certificate.
    host = f"cac{uuid.uuid4().hex[:4]}.example.test"
    out = ipa(client, """
        curl -sSf http://ipa.example.test/ipa/config/ca.crt -o /tmp/ca.crt
        openssl x509 -in /tmp/ca.crt -out /tmp/new-ca.pem  # the first, the newest
        for target in ipa.example.test:443 ca.example.test:8443; do
            echo | openssl s_client -connect "$target" -CAfile /tmp/new-ca.pem \
                -verify_return_error >/dev/null 2>&1 && echo "VERIFIED $target"
        done
        echo | openssl s_client -connect ipa.example.test:636 -CAfile /tmp/new-ca.pem \
            -verify_return_error >/dev/null 2>&1 && echo "VERIFIED ldaps"
        kinit -n -X X509_anchors=FILE:/tmp/new-ca.pem -c /tmp/anon2 && echo PKINIT-OK
        ipa host-add "$H" --force >/dev/null && ipa service-add "HTTP/$H" --force >/dev/null
        cd /tmp && openssl req -new -newkey rsa:2048 -nodes -keyout k3 -out r3.csr \
            -subj "/O=EXAMPLE.TEST/CN=$H" 2>/dev/null
        ipa cert-request r3.csr --principal "HTTP/$H" --certificate-out /tmp/issued.pem >/dev/null
        openssl verify -CAfile /tmp/new-ca.pem /tmp/issued.pem
        """, H=host)
    for target in ("ipa.example.test:443", "ca.example.test:8443", "ldaps"):
        assert f"VERIFIED {target}" in out, out
    assert "PKINIT-OK" in out and "/tmp/issued.pem: OK" in out, out


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

