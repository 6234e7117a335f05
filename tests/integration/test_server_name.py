"""The one server name FreeIPA's clients know (ipa.example.test): LDAP, Kerberos and HTTP
on their standard ports, each reaching the service that serves it, and FreeIPA knowing
that name as its server; plus what used to fail without it (``ipa cert-find``, the CA
certificate at /ipa/config/ca.crt). Real clients, from the toolbox container."""

from __future__ import annotations

import time
import uuid

from tests.integration.stack_client import KINIT_ADMIN, Client
from tests.integration.test_ipa_api import admin_env, ipa
from tests.integration.test_ipa_certs import ANCHOR

SERVER = "ipa.example.test"


def _as_admin(client: Client, script: str) -> str:
    """``script`` after kinit admin, with Kerberos on the server name; its output."""
    result = client.run(KINIT_ADMIN + " && " + script, kdc=f"{SERVER}:88",
                        env=admin_env(client))
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    return out


def test_kerberos_on_88_and_464_udp_and_tcp(client: Client) -> None:
    for udp_limit in (1, 65535):  # 1: TCP only; 65535: UDP first
        result = client.run(KINIT_ADMIN + " && klist && kvno ldap/ipa.example.test "
                            "HTTP/ipa.example.test",
                            kdc=f"{SERVER}:88", env=admin_env(client), udp_limit=udp_limit)
        out = result.stdout + result.stderr
        assert result.returncode == 0, out
        assert "krbtgt/EXAMPLE.TEST@EXAMPLE.TEST" in out, out
        assert "ldap/ipa.example.test@EXAMPLE.TEST: kvno" in out, out


def test_ldap_on_389_and_636_as_the_server(client: Client) -> None:
    out = _as_admin(
        client, "ldapwhoami -Q -Y GSSAPI -H ldap://ipa.example.test"
        " && ldapsearch -LLL -x -H ldap://ipa.example.test -s base -b '' namingContexts"
        " && LDAPTLS_CACERT=/tmp/ipa/ca.crt ldapsearch -LLL -Q -Y GSSAPI"
        " -H ldaps://ipa.example.test -b 'cn=masters,cn=ipa,cn=etc,dc=example,dc=test'"
        " -s one cn")
    assert "dn: uid=admin,cn=users,cn=accounts,dc=example,dc=test" in out, out
    assert "namingContexts: dc=example,dc=test" in out, out
    # FreeIPA's server is the server name (its master entry), over LDAPS verified by name.
    assert "dn: cn=ipa.example.test,cn=masters,cn=ipa,cn=etc,dc=example,dc=test" in out, out


def test_ipa_knows_the_server_name(client: Client) -> None:
    out = ipa(client, "ipa server-find && ipa server-show ipa.example.test")
    assert "Server name: ipa.example.test" in out, out


def test_the_kdc_serves_pkinit_with_a_certificate_from_dogtag(client: Client) -> None:
    """FreeIPA's view (``ipa pkinit-status``), and the certificate itself: issued by the
    IPA CA for the KDC (its EKU id-pkinit-KPKdc, krbtgt/REALM in its subjectAltName)."""
    out = ipa(client, "ipa pkinit-status")
    assert "Server name: ipa.example.test" in out and "PKINIT status: enabled" in out, out
    cert = _as_admin(
        client, "ldapsearch -LLL -Q -Y GSSAPI -o ldif-wrap=no -H ldap://ipa.example.test -s base"
        " -b cn=KDC,cn=ipa.example.test,cn=masters,cn=ipa,cn=etc,dc=example,dc=test"
        " 'userCertificate;binary' | sed -n 's/^userCertificate;binary:: //p' | head -1"
        " | base64 -d | openssl x509 -inform DER -noout -text")
    assert "Issuer: O=EXAMPLE.TEST, CN=Certificate Authority" in cert, cert
    assert "Signing KDC Response" in cert, cert  # id-pkinit-KPKdc, the profile's EKU


def test_http_on_443_and_80(client: Client) -> None:
    out = _as_admin(
        client, "curl -sS --negotiate -u : --cacert /tmp/ipa/ca.crt"
        " https://ipa.example.test/ipa/whoami"
        " && curl -sS -o /dev/null -w 'http:%{http_code} %{redirect_url}\\n'"
        " http://ipa.example.test/ipa/ui/")
    assert "admin@EXAMPLE.TEST" in out, out
    assert "http:301 https://ipa.example.test/ipa/ui/" in out, out


def test_a_port_nobody_serves_is_refused_at_once(client: Client) -> None:
    started = time.monotonic()
    result = client.run("curl -sS --max-time 20 http://ipa.example.test:3389/; echo rc=$?")
    out = result.stdout + result.stderr
    assert "rc=7" in out, out  # 7: could not connect (28 would be the timeout)
    assert time.monotonic() - started < 15, "a refused connection, not a timeout"


def test_the_ca_certificate_at_ipa_config_is_the_one_in_ldap(client: Client) -> None:
    result = client.run(
        "curl -sSf http://ipa.example.test/ipa/config/ca.crt -o /tmp/web.pem"
        " && ldapsearch -LLL -x -H ldap://ipa.example.test -o ldif-wrap=no"
        " -b 'cn=CAcert,cn=ipa,cn=etc,dc=example,dc=test' -s base 'cACertificate;binary'"
        " | sed -n 's/^cACertificate;binary:: //p' | base64 -d"
        " | openssl x509 -inform DER -out /tmp/ldap.pem"
        " && cmp /tmp/web.pem /tmp/ldap.pem && echo same-ca"
        " && openssl x509 -in /tmp/web.pem -noout -subject")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "same-ca" in out and "CN=Certificate Authority" in out, out


def test_cert_find_show_and_status_tell_what_was_issued(client: Client, ca_pem: str) -> None:
    host = f"find{uuid.uuid4().hex[:4]}.example.test"
    out = ipa(client, ANCHOR + """
        ipa host-add "$H" --force >/dev/null && ipa service-add "HTTP/$H" --force >/dev/null
        cd /tmp && openssl req -new -newkey rsa:2048 -nodes -keyout k -out r.csr \
            -subj "/O=EXAMPLE.TEST/CN=$H" 2>/dev/null
        ipa cert-request r.csr --principal "HTTP/$H" --all >/tmp/issued
        serial=$(sed -n 's/^  Serial number: //p' /tmp/issued)
        echo "SERIAL=$serial"
        ipa cert-find --subject "$H"
        ipa cert-show "$serial"
        ipa cert-status "$(sed -n 's/^  request_id: //p' /tmp/issued)"
        """, H=host, CA_PEM=ca_pem)
    serial = out.split("SERIAL=", 1)[1].split()[0]
    assert "Number of entries returned 1" in out, out
    assert f"Subject: CN={host},O=EXAMPLE.TEST" in out, out
    assert f"Serial number: {serial}" in out, out
    assert "Request status: complete" in out, out  # cert-status: Dogtag's request record
