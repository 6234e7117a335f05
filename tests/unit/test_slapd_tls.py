"""ldap's TLS watcher (services/ldap/slapd_tls.py): a new directory has no certificate
and TLS off (dscreate makes none); the first certificate the IPA CA issues for ldap's
key is installed, TLS turned on with the spec's port, and ns-slapd restarted once; one
installed while the turn-on failed is turned on at the next look, without a new
install; a renewed certificate is installed with TLS already on."""

from __future__ import annotations

import datetime
import sys
import types

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from service_modules import load


def _ldap_stub() -> types.ModuleType:
    """python-ldap's names slapd_tls uses outside a connection (the host running the
    unit tests has no python-ldap; the directory here is a fake)."""
    stub = sys.modules.setdefault("ldap", types.ModuleType("ldap"))
    if not hasattr(stub, "LDAPError"):
        stub.LDAPError = type("LDAPError", (Exception,), {})  # type: ignore[attr-defined]
    return stub


LDAP = _ldap_stub()
derived_keys = load("services/common/derived_keys.py")
load("services/common/child_process.py")  # what slapd_tls imports beside it
slapd_tls = load("services/ldap/slapd_tls.py")
NOW = datetime.datetime.now(datetime.UTC)
CA_KEY = ec.generate_private_key(ec.SECP256R1())
LDAP_KEY = derived_keys.derive(b"0123456789abcdef0123456789abcdef", "ldap-tls")
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())


def _cert(key: ec.EllipticCurvePrivateKey, serial: int, days: int = 700) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ipa.example.test")])
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Certificate Authority")])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(issuer)
            .public_key(key.public_key()).serial_number(serial)
            .not_valid_before(NOW - datetime.timedelta(days=1))
            .not_valid_after(NOW + datetime.timedelta(days=days))
            .sign(CA_KEY, hashes.SHA256()))


class _Directory:
    def __init__(self, *issued: x509.Certificate, tls_on: bool = False) -> None:
        self.issued, self.tls_on = list(issued), tls_on
        self.ports: list[int] = []
        self.refuse = False

    def certificates(self) -> list[x509.Certificate]:
        return self.issued

    def ca_certificates(self) -> list[x509.Certificate]:
        return []

    def security_on(self) -> bool:
        return self.tls_on

    def enable_security(self, port: int) -> None:
        if self.refuse:
            raise LDAP.LDAPError({"desc": "refused"})
        self.ports.append(port)
        self.tls_on = True


class _Nss:
    def __init__(self) -> None:
        self.installed: list[x509.Certificate] = []

    def server_certificate(self) -> x509.Certificate | None:
        return self.installed[-1] if self.installed else None

    def install(self, key: object, cert: x509.Certificate, cas: list[x509.Certificate]) -> None:
        self.installed.append(cert)


def test_nothing_issued_yet_or_only_for_another_key_means_look_again_soon() -> None:
    nss = _Nss()
    assert slapd_tls.look(_Directory(), nss, LDAP_KEY) == slapd_tls.SOON
    assert slapd_tls.look(_Directory(_cert(OTHER_KEY, 5)), nss, LDAP_KEY) == slapd_tls.SOON
    assert nss.installed == []


def test_the_first_certificate_is_installed_tls_on_and_ns_slapd_restarted_once() -> None:
    directory, nss, first = _Directory(), _Nss(), _cert(LDAP_KEY, 10)
    directory.issued.append(first)
    assert slapd_tls.look(directory, nss, LDAP_KEY) == slapd_tls.RESTART
    assert nss.installed == [first]
    assert directory.tls_on and directory.ports == [slapd_tls.SECURE_PORT]
    # Served from then on: nothing to do until the CA issues another.
    assert slapd_tls.look(directory, nss, LDAP_KEY) == slapd_tls.IDLE
    assert nss.installed == [first] and directory.ports == [slapd_tls.SECURE_PORT]


def test_a_failed_turn_on_is_retried_without_installing_again() -> None:
    directory, nss, first = _Directory(), _Nss(), _cert(LDAP_KEY, 10)
    directory.issued.append(first)
    directory.refuse = True
    assert slapd_tls.look(directory, nss, LDAP_KEY) == slapd_tls.SOON
    assert nss.installed == [first] and not directory.tls_on
    directory.refuse = False
    assert slapd_tls.look(directory, nss, LDAP_KEY) == slapd_tls.RESTART
    assert nss.installed == [first] and directory.tls_on


def test_a_renewed_certificate_is_installed_with_tls_already_on() -> None:
    old, renewed = _cert(LDAP_KEY, 10, days=20), _cert(LDAP_KEY, 11)
    directory, nss = _Directory(old, renewed, tls_on=True), _Nss()
    nss.installed.append(old)
    assert slapd_tls.look(directory, nss, LDAP_KEY) == slapd_tls.RESTART
    assert nss.installed == [old, renewed] and directory.ports == []
