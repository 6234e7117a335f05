"""The service certificates name the server and the service's own host: the CA service's
profile derived from Dogtag's caECServerCert (services/ca/ipa_ca.py), the request it
sends, and the check that re-issues a certificate lacking a name (an older volume's)."""

from __future__ import annotations

import datetime
import sys
import types
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from service_modules import ROOT, load

sys.modules.setdefault("ldap", types.ModuleType("ldap"))  # the directory is not used here
sys.path.insert(0, str(ROOT / "services" / "common"))
sys.path.insert(0, str(ROOT / "services" / "ca"))
ipa_ca = load("services/ca/ipa_ca.py")

DOGTAG_EC_SERVER_POLICIES = "policyset.serverCertSet.list=1,2,3,4,5,6,7,8,12"


def _dogtag_profiles(tmp_path: Path, policies: str = DOGTAG_EC_SERVER_POLICIES) -> Path:
    """The lines of Dogtag 10.10's caECServerCert.cfg the derivation reads."""
    (tmp_path / "caECServerCert.cfg").write_text(
        "desc=This certificate profile is for enrolling server certificates with ECC keys.\n"
        "visible=true\nenable=true\nenableBy=admin\nauth.class_id=\n"
        "name=Manual Server Certificate Enrollment with ECC keys\ninput.list=i1,i2\n"
        f"policyset.list=serverCertSet\n{policies}\n"
        "policyset.serverCertSet.12.default.class_id=commonNameToSANDefaultImpl\n")
    return tmp_path


def test_the_profile_takes_the_requested_names_before_copying_the_cn(tmp_path: Path) -> None:
    text = ipa_ca.san_profile_text(str(_dogtag_profiles(tmp_path))).decode()
    lines = text.splitlines()
    assert lines[0] == f"profileId={ipa_ca.SAN_PROFILE}" and "classId=caEnrollImpl" in lines
    assert "policyset.serverCertSet.list=1,2,3,4,5,6,7,8,11,12" in lines
    assert DOGTAG_EC_SERVER_POLICIES not in lines
    assert "policyset.serverCertSet.11.default.params.userExtOID=2.5.29.17" in lines
    assert sum(line.startswith(("name=", "desc=")) for line in lines) == 2  # replaced, once


def test_a_changed_dogtag_profile_is_refused_not_guessed(tmp_path: Path) -> None:
    with pytest.raises(ipa_ca.SetupError, match="Dogtag changed"):
        ipa_ca.san_profile_text(str(_dogtag_profiles(tmp_path, "policyset.serverCertSet"
                                                               ".list=1,2,3,12")))


def _certificate(key: ec.EllipticCurvePrivateKey, names: list[str],
                 days: int = 700) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ipa")]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CA")]))
               .public_key(key.public_key()).serial_number(7)
               .not_valid_before(now - datetime.timedelta(days=1))
               .not_valid_after(now + datetime.timedelta(days=days)))
    if names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    return builder.sign(key, hashes.SHA256())


def test_the_request_asks_for_every_name() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = ipa_ca.certificate_request(key, "CN=ipa.example.test,O=EXAMPLE.TEST",
                                     ("ipa.example.test", "http.example.test"))
    csr = x509.load_pem_x509_csr(pem.encode())
    names = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["ipa.example.test", "http.example.test"]
    assert csr.subject.rfc4514_string() == "CN=ipa.example.test,O=EXAMPLE.TEST"


def test_a_certificate_without_a_wanted_name_is_issued_again() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    wanted = ("ipa.example.test", "ldap.example.test")
    assert ipa_ca.valid_for(_certificate(key, list(wanted)), key, wanted)
    assert not ipa_ca.valid_for(_certificate(key, ["ldap.example.test"]), key, wanted)
    assert not ipa_ca.valid_for(_certificate(key, []), key, wanted)  # an older volume's
    # Within the renewal window it is still valid: renewal.decide renews it.
    assert ipa_ca.valid_for(_certificate(key, list(wanted), days=10), key, wanted)
    other = ec.generate_private_key(ec.SECP256R1())
    assert not ipa_ca.valid_for(_certificate(other, list(wanted)), key, wanted)


def test_the_ca_enters_freeipas_certificate_store_as_the_installer_writes_it() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "EXAMPLE.TEST"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "Certificate Authority")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    entry = ipa_ca.ca_certificate_store_entry(cert, "EXAMPLE.TEST")
    assert entry["cn"] == [b"EXAMPLE.TEST IPA CA"]
    assert entry["ipaCertSubject"] == [b"CN=Certificate Authority,O=EXAMPLE.TEST"]
    assert entry["ipaCertIssuerSerial"] == [b"CN=Certificate Authority,O=EXAMPLE.TEST;1"]
    assert entry["ipaKeyTrust"] == [b"trusted"]
    assert set(entry["ipaConfigString"]) == {b"ipaCA", b"compatCA"}
    assert x509.load_der_x509_certificate(entry["cACertificate;binary"][0]) == cert
