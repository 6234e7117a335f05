"""The kdc's PKINIT watcher (services/kdc/kdc_pkinit.py): the KDC profile with and without
FreeIPA's PKINIT lines, and which published certificate it serves: only one for the
KDC's own derived key, the newest valid one, with every valid IPA CA certificate."""

from __future__ import annotations

import base64
import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from service_modules import ROOT, load

derived_keys = load("services/common/derived_keys.py")
load("services/common/child_process.py")  # what kdc_pkinit imports beside it
load("services/kdc/kdc_setup.py")
kdc_pkinit = load("services/kdc/kdc_pkinit.py")
NOW = datetime.datetime.now(datetime.UTC)
CA_KEY = ec.generate_private_key(ec.SECP256R1())
KDC_KEY = derived_keys.derive(b"0123456789abcdef0123456789abcdef", "kdc-pkinit")
KDC = "cn=KDC,cn=ipa.example.test,cn=masters,cn=ipa,cn=etc,dc=example,dc=test"
CA = "cn=CAcert,cn=ipa,cn=etc,dc=example,dc=test"


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, serial: int,
          days: int = 700) -> x509.Certificate:
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Certificate Authority")])
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer).public_key(key.public_key()).serial_number(serial)
            .not_valid_before(NOW - datetime.timedelta(days=1))
            .not_valid_after(NOW + datetime.timedelta(days=days))
            .sign(CA_KEY, hashes.SHA256()))


CA_CERT = _cert("Certificate Authority", CA_KEY, 1, days=7000)


def _ldif(dn: str, attribute: str, *certs: x509.Certificate) -> str:
    return "\n".join([f"dn: {dn}", *(f"{attribute}:: " + base64.b64encode(
        c.public_bytes(serialization.Encoding.DER)).decode() for c in certs)]) + "\n"


class _Directory:
    def __init__(self, *kdc_certs: x509.Certificate) -> None:
        self.entries = {KDC: _ldif(KDC, "userCertificate;binary", *kdc_certs),
                        CA: _ldif(CA, "cACertificate;binary", CA_CERT)}

    def ldif(self, base: str, *attributes: str) -> str | None:
        return self.entries[base]


def test_the_profile_gets_the_pkinit_lines_only_when_on() -> None:
    template = (ROOT / "services/kdc/kdc.conf.j2").read_text().replace("{{ realm }}",
                                                                        "EXAMPLE.TEST")
    off = kdc_pkinit.kdc_conf(template, "/tmp/ipabuild-kdc", pkinit=False)
    on = kdc_pkinit.kdc_conf(template, "/tmp/ipabuild-kdc", pkinit=True)
    assert "pkinit_" not in off and "@PKINIT@" not in off and "@RUN@" not in off
    assert ("        pkinit_identity = FILE:/tmp/ipabuild-kdc/kdc.crt,"
            "/tmp/ipabuild-kdc/kdc.key\n") in on
    assert "        pkinit_anchors = FILE:/tmp/ipabuild-kdc/ca.pem\n" in on
    assert on.replace("".join(f"        {line}\n".format(run="/tmp/ipabuild-kdc")
                              for line in kdc_pkinit.PKINIT_LINES), "") == off


def test_no_certificate_or_one_for_another_key_is_nothing_to_serve() -> None:
    other = _cert("ipa.example.test", ec.generate_private_key(ec.SECP256R1()), 5)
    assert kdc_pkinit.published_bundle(_Directory(), KDC, CA, KDC_KEY) is None
    assert kdc_pkinit.published_bundle(_Directory(other), KDC, CA, KDC_KEY) is None


def test_the_newest_certificate_for_the_kdcs_key_is_served_once(tmp_path: Path) -> None:
    old, renewed = _cert("ipa.example.test", KDC_KEY, 9), _cert("ipa.example.test", KDC_KEY,
                                                                  31, days=900)
    bundle = kdc_pkinit.published_bundle(_Directory(old), KDC, CA, KDC_KEY)
    assert bundle is not None and not bundle.served_from(tmp_path)
    bundle.write(tmp_path)
    assert bundle.served_from(tmp_path)
    assert x509.load_pem_x509_certificate((tmp_path / "kdc.crt").read_bytes()).serial_number == 9
    assert (tmp_path / "kdc.key").stat().st_mode & 0o077 == 0
    assert x509.load_pem_x509_certificate((tmp_path / "ca.pem").read_bytes()) == CA_CERT
    # the renewer published a renewed certificate beside the old one: it replaces it
    newer = kdc_pkinit.published_bundle(_Directory(old, renewed), KDC, CA, KDC_KEY)
    assert newer is not None and not newer.served_from(tmp_path)
    assert "serial=1F" in kdc_pkinit.describe(newer)
