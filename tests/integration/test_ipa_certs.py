"""Certificates through IPA: the http service's ipaserver talks to the ca service's
Dogtag as IPA's RA agent, with the certificate and key the ca service had Dogtag issue
(ipa_ca.py); ldap and http serve TLS certificates the IPA CA issued. Every command runs
in the client toolbox from a fresh container; the trust anchor the assertions use comes
from the ca container itself, not from the network."""

from __future__ import annotations

import uuid

import pytest

from tests.integration.conftest import ipabuild
from tests.integration.stack_client import Client
from tests.integration.test_ipa_api import ipa

ANCHOR = 'printf "%s" "$CA_PEM" > /tmp/ipa-ca.pem && '


@pytest.fixture(scope="module")
def web_service(client: Client) -> str:
    host = f"web{uuid.uuid4().hex[:4]}.example.test"
    out = ipa(client, 'ipa host-add "$H" --force && ipa service-add "HTTP/$H" --force', H=host)
    assert f'Added service "HTTP/{host}@EXAMPLE.TEST"' in out, out
    return host


@pytest.fixture(scope="module")
def mode_web_service(ipa_client: Client) -> str:
    """A host's HTTP service of each mode's realm in turn."""
    host = f"web{uuid.uuid4().hex[:4]}.example.test"
    out = ipa(ipa_client, 'ipa host-add "$H" --force && ipa service-add "HTTP/$H" --force',
              H=host)
    assert f'Added service "HTTP/{host}@EXAMPLE.TEST"' in out, out
    return host


def test_http_and_ldap_serve_certificates_the_ipa_ca_issued(ipa_client: Client,
                                                           mode_ca_pem: str) -> None:
    # The server name's own TLS ports (443, 636) are checked by test_server_name.py.
    result = ipa_client.run(
        ANCHOR
        + "openssl s_client -connect http.example.test:443 -servername http.example.test "
          "-verify_hostname http.example.test -CAfile /tmp/ipa-ca.pem -verify_return_error "
          "</dev/null 2>&1 | grep -E '^(Verify return code|subject=|issuer=)'; "
          "openssl s_client -connect ldap.example.test:3389 -starttls ldap "
          "-verify_hostname ldap.example.test -CAfile /tmp/ipa-ca.pem -verify_return_error "
          "</dev/null 2>&1 | grep -E '^(Verify return code|subject=)'; "
          "cmp /tmp/ipa-ca.pem /tmp/ipa/ca.crt && echo anchor-is-the-ipa-ca",
        env={"CA_PEM": mode_ca_pem})
    out = result.stdout + result.stderr
    assert out.count("Verify return code: 0 (ok)") == 2, out
    # FreeIPA's master, the server name, is the subject (each host name in the SAN).
    assert "CN=ipa.example.test" in out, out
    assert "CN=Certificate Authority" in out, out
    # The toolbox's first-use anchor (the top of http's chain) is the IPA CA itself.
    assert "anchor-is-the-ipa-ca" in out, out


def test_cert_request_show_revoke(ipa_client: Client, mode_ca_pem: str,
                                  mode_web_service: str) -> None:
    out = ipa(ipa_client, ANCHOR + """
        cd /tmp && openssl req -new -newkey rsa:2048 -nodes -keyout web.key \
            -subj "/O=EXAMPLE.TEST/CN=$H" -out web.csr 2>/dev/null
        ipa cert-request web.csr --principal "HTTP/$H" --certificate-out web.crt
        openssl verify -CAfile /tmp/ipa-ca.pem web.crt
        serial=$((16#$(openssl x509 -in web.crt -noout -serial | cut -d= -f2)))
        echo "SERIAL=$serial"
        ipa cert-show "$serial"
        ipa cert-revoke "$serial" --revocation-reason=4
        ipa cert-show "$serial"
        curl -s --cacert /tmp/ipa-ca.pem -H 'Accept: application/json' \
            "https://ca:8443/ca/rest/certs/$serial" \
            | python3 -c 'import json, sys; print("DOGTAG=" + json.load(sys.stdin)["Status"])'
        """, H=mode_web_service, CA_PEM=mode_ca_pem)
    assert "web.crt: OK" in out, out
    assert f"Subject: CN={mode_web_service},O=EXAMPLE.TEST" in out, out
    assert f"Owner service: HTTP/{mode_web_service}@EXAMPLE.TEST" in out, out
    after = out.split("SERIAL=", 1)[1].split("Revoked: False", 1)[1]
    assert "Revoked: True" in after and "Revocation reason: 4" in after, out
    # Dogtag itself (not IPA's record of it) has the certificate revoked.
    assert "DOGTAG=REVOKED" in after, out


def test_getkeytab_then_kvno(ipa_client: Client, mode_web_service: str) -> None:
    """ipa-getkeytab binds with StartTLS, which ldap answers with the IPA CA's
    certificate; the KDC then issues a ticket for the keys it set."""
    out = ipa(ipa_client, 'ipa-getkeytab -H ldap://ldap.example.test:3389 -p "HTTP/$H" '
                      '-k /tmp/web.keytab && klist -k /tmp/web.keytab && kvno "HTTP/$H"',
              H=mode_web_service)
    assert "Keytab successfully retrieved" in out, out
    assert f"HTTP/{mode_web_service}@EXAMPLE.TEST: kvno = 1" in out, out


def test_user_changes_own_password_with_ipa_passwd(client: Client) -> None:
    """A user's own `ipa passwd` checks the old password with a simple bind, which
    ipaserver makes only over TLS: http reaches ldap over LDAPS."""
    user = f"carol{uuid.uuid4().hex[:4]}"
    initial, chosen, third = (f"{tag}-{uuid.uuid4().hex[:10]}" for tag in ("I", "C", "T"))
    # IPA's default policy lets a user change their password after an hour: a group
    # policy with no minimum life for carol only.
    ipa(client, 'printf "%s\\n%s\\n" "$P" "$P" | ipa user-add "$U" --first Carol --last C '
                '--password && ipa group-add "$U-pw" && ipa group-add-member "$U-pw" --users "$U" '
                '&& ipa pwpolicy-add "$U-pw" --minlife 0 --priority "$PRIO"', U=user, P=initial,
        PRIO=str(100 + uuid.uuid4().int % 10**6))  # unique per policy: random, reruns too
    result = client.run(
        'printf "%s\\n%s\\n%s\\n" "$I" "$C" "$C" | kinit "$U" >/dev/null && '
        'printf "%s\\n%s\\n%s\\n" "$C" "$T" "$T" | ipa passwd "$U" && kdestroy && '
        'printf "%s\\n" "$T" | kinit "$U" && echo third-password-works',
        env={"U": user, "I": initial, "C": chosen, "T": third})
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert f'Changed password for "{user}@EXAMPLE.TEST"' in out, out
    assert "third-password-works" in out, out


def test_ipa_data_survives_down_and_up(stack: str, client: Client, ca_pem: str,
                                       web_service: str) -> None:
    """Users, groups, services and certificates made through the API are all there
    after `ipabuild down` and `up` (volumes kept), and the API issues again."""
    user, group = f"dave{uuid.uuid4().hex[:4]}", f"ops{uuid.uuid4().hex[:4]}"
    out = ipa(client, ANCHOR + """
        ipa user-add "$U" --first Dave --last D >/dev/null
        ipa group-add "$G" >/dev/null && ipa group-add-member "$G" --users "$U" >/dev/null
        cd /tmp && openssl req -new -newkey rsa:2048 -nodes -keyout k -out r.csr \
            -subj "/O=EXAMPLE.TEST/CN=$H" 2>/dev/null
        ipa cert-request r.csr --principal "HTTP/$H" | sed -n 's/^  Serial number: /SERIAL=/p'
        """, U=user, G=group, H=web_service, CA_PEM=ca_pem)
    serial = out.split("SERIAL=", 1)[1].split()[0]
    assert ipabuild("down", "--name", stack).returncode == 0
    up = ipabuild("up", "--name", stack)
    assert up.returncode == 0, up.stderr[-3000:]
    out = ipa(client, ANCHOR + """
        ipa user-show "$U" && ipa group-show "$G" && ipa service-show "HTTP/$H"
        ipa cert-show "$S" --out /tmp/kept.pem
        openssl verify -CAfile /tmp/ipa-ca.pem /tmp/kept.pem
        cd /tmp && openssl req -new -newkey rsa:2048 -nodes -keyout k2 -out r2.csr \
            -subj "/O=EXAMPLE.TEST/CN=$H" 2>/dev/null
        ipa cert-request r2.csr --principal "HTTP/$H"
        """, U=user, G=group, H=web_service, S=serial, CA_PEM=ca_pem)
    assert f"User login: {user}" in out and f"Member users: {user}" in out, out
    assert f"Principal name: HTTP/{web_service}@EXAMPLE.TEST" in out, out
    assert "/tmp/kept.pem: OK" in out and "Revoked: False" in out, out
    assert out.count("Issuing CA: ipa") >= 2, out
