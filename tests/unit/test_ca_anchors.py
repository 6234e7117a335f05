"""The IPA CA's certificates as a trust file (derived_keys.anchors): after the CA's own
renewal cn=CAcert holds the old and the new certificate; consumers must trust both while
both are valid, newest first, and drop the old one once it expires."""

from __future__ import annotations

import base64
import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from service_modules import load

derived_keys = load("services/common/derived_keys.py")
NOW = datetime.datetime.now(datetime.UTC)
KEY = ec.generate_private_key(ec.SECP256R1())


def ca_cert(serial: int, not_before: datetime.datetime,
            not_after: datetime.datetime) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Certificate Authority")])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(KEY.public_key()).serial_number(serial)
            .not_valid_before(not_before).not_valid_after(not_after)
            .sign(KEY, hashes.SHA256()))


def ldif(*certs: x509.Certificate) -> str:
    lines = ["dn: cn=CAcert,cn=ipa,cn=etc,dc=example,dc=test"]
    lines += ["cACertificate;binary:: " + base64.b64encode(
        cert.public_bytes(serialization.Encoding.DER)).decode() for cert in certs]
    return "\n".join(lines) + "\n"


def test_old_and_renewed_are_both_trusted_newest_first() -> None:
    old = ca_cert(1, NOW - datetime.timedelta(days=7000), NOW + datetime.timedelta(days=20))
    new = ca_cert(99, NOW, NOW + datetime.timedelta(days=7305))
    assert [c.serial_number for c in derived_keys.anchors(ldif(old, new))] == [99, 1]


def test_an_expired_value_is_left_out() -> None:
    old = ca_cert(1, NOW - datetime.timedelta(days=7305), NOW - datetime.timedelta(days=1))
    new = ca_cert(99, NOW - datetime.timedelta(days=30), NOW + datetime.timedelta(days=7000))
    assert [c.serial_number for c in derived_keys.anchors(ldif(old, new))] == [99]


def test_other_attributes_and_garbage_are_ignored() -> None:
    cert = ca_cert(5, NOW - datetime.timedelta(days=1), NOW + datetime.timedelta(days=1))
    text = ldif(cert) + "userCertificate;binary:: " + base64.b64encode(
        cert.public_bytes(serialization.Encoding.DER)).decode() + "\ncACertificate;binary:: AAAA\n"
    assert [c.serial_number for c in derived_keys.anchors(text)] == [5]


def test_the_command_writes_a_bundle_or_exits_1(tmp_path, monkeypatch, capsys) -> None:
    import io
    old = ca_cert(1, NOW - datetime.timedelta(days=7000), NOW + datetime.timedelta(days=20))
    new = ca_cert(99, NOW, NOW + datetime.timedelta(days=7305))
    out = tmp_path / "ca.pem"
    monkeypatch.setattr("sys.stdin", io.StringIO(ldif(old, new)))
    assert derived_keys.main(["anchors", str(out)]) == 0
    bundle = x509.load_pem_x509_certificates(out.read_bytes())
    assert [c.serial_number for c in bundle] == [99, 1]
    monkeypatch.setattr("sys.stdin", io.StringIO("dn: cn=CAcert\n"))
    assert derived_keys.main(["anchors", str(tmp_path / "none.pem")]) == 1
    assert not (tmp_path / "none.pem").exists()


def test_select_takes_the_newest_valid_certificate_for_the_key() -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    old = ca_cert(1, NOW - datetime.timedelta(days=700), NOW + datetime.timedelta(days=20))
    new = ca_cert(2, NOW, NOW + datetime.timedelta(days=700))
    expired = ca_cert(3, NOW - datetime.timedelta(days=9), NOW - datetime.timedelta(days=1))
    text = ldif(old, new, expired).replace("cACertificate;binary", "userCertificate;binary")
    assert derived_keys.select(text, KEY).serial_number == 2
    assert derived_keys.select(text, other) is None
