"""Our own logic around certificates: the spec's declaration of held certificates, how
`ipabuild certs` reads and reports them, `up --env`, and the test-only short-lived
profiles (services/ca/ipa_ca.py). The real renewal is tests/integration/test_renewal.py."""

from __future__ import annotations

import datetime
import json
import sys
import types
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import ValidationError
from service_modules import ROOT, load

from ipabuild.cli.stack import _service_environment
from ipabuild.core.errors import UsageError
from ipabuild.spec.model import HeldCertificate
from ipabuild.stack.certs import CertificateRow, attention, describe, read_command, renewal_note

sys.modules.setdefault("ldap", types.ModuleType("ldap"))
sys.path.insert(0, str(ROOT / "services" / "common"))
sys.path.insert(0, str(ROOT / "services" / "ca"))
ipa_ca = load("services/ca/ipa_ca.py")

NOW = datetime.datetime(2026, 12, 5, 12, 0, tzinfo=datetime.UTC)


def _pem(days: float) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ipa.example.test")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(4242)
            .not_valid_before(NOW - datetime.timedelta(days=1))
            .not_valid_after(NOW + datetime.timedelta(days=days))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def test_a_held_certificate_lives_in_one_place() -> None:
    HeldCertificate(name="a", role="r", pem="/tmp/a.pem", renewed_by="x")
    HeldCertificate(name="a", role="r", nssdb="/etc/pki/alias", nickname="n", renewed_by="x")
    for wrong in ({"pem": "/a", "nssdb": "/b", "nickname": "n"}, {}, {"nssdb": "/b"},
                  {"pem": "relative.pem"}):
        with pytest.raises(ValidationError):
            HeldCertificate(name="a", role="r", renewed_by="x", **wrong)


def test_nss_nicknames_are_quoted_and_paths_may_glob() -> None:
    held = HeldCertificate(name="a", role="r", nssdb="/etc/dirsrv/slapd-*",
                           nickname="Server-Cert cert-pki-ca", renewed_by="x")
    assert read_command(held) == [
        "sh", "-c", "certutil -L -a -d /etc/dirsrv/slapd-* -n 'Server-Cert cert-pki-ca'"]


def test_a_row_says_serial_dates_and_days_left() -> None:
    row = CertificateRow("http", "http-tls", "TLS", "/tmp/tls.crt", "ca")
    describe(row, _pem(10.5), NOW)
    assert row.serial == 4242 and row.subject == "CN=ipa.example.test"
    assert row.not_after == "2026-12-16T00:00:00Z" and row.days_left == 10.5
    assert attention([row]) == ["http/http-tls: expires in 10.5 days (2026-12-16T00:00:00Z)"]
    soon = CertificateRow("http", "http-tls", "TLS", "/tmp/tls.crt", "ca")
    describe(soon, _pem(0.003), NOW)  # 4.3 minutes left
    assert attention([soon]) == ["http/http-tls: expires in 4 minutes (2026-12-05T12:04:19Z)"]


def test_attention_names_expired_unreadable_and_failing() -> None:
    expired = CertificateRow("kdc", "kdc-pkinit", "PKINIT", "/tmp/kdc.crt", "ca")
    describe(expired, _pem(-0.5), NOW)
    unreadable = CertificateRow("ldap", "ldap-tls", "TLS", "db", "ca", error="no such file")
    failing = CertificateRow("http", "ra-agent", "RA", "/tmp/ra.pem", "ca",
                             renewal=renewal_note({"failures": 2, "last_error": "CA down",
                                                   "next_attempt": "2026-12-05T12:04:00Z"}))
    describe(failing, _pem(400), NOW)
    assert attention([expired, unreadable, failing]) == [
        "kdc/kdc-pkinit: EXPIRED 2026-12-05T00:00:00Z",
        "ldap/ldap-tls: cannot be read: no such file",
        "http/ra-agent: renewal failing (2 attempts): CA down; next attempt "
        "2026-12-05T12:04:00Z"]
    assert expired.expired and not failing.expired


def test_renewal_notes() -> None:
    assert renewal_note({"renewals": 0}) == "tracked"
    assert renewal_note({"renewals": 3, "renewed_at": "T"}) == "renewed 3x, last T"


def test_env_values_per_service_or_for_all() -> None:
    assert _service_environment(("ca:A=1", "B=x:y=z"), ["ca", "http"]) == {
        "ca": {"A": "1", "B": "x:y=z"}, "http": {"B": "x:y=z"}}
    for wrong in ("A", "ca:=1", "ca:1A=2", "nope:A=1"):
        with pytest.raises(UsageError):
            _service_environment((wrong,), ["ca", "http"])


CA_EC_SUBSYSTEM = """profileId=caECSubsystemCert
policyset.serverCertSet.2.constraint.class_id=validityConstraintImpl
policyset.serverCertSet.2.constraint.params.range=720
policyset.serverCertSet.2.default.class_id=validityDefaultImpl
policyset.serverCertSet.2.default.name=Validity Default
policyset.serverCertSet.2.default.params.range=720
policyset.serverCertSet.2.default.params.startTime=0
"""


def test_a_short_lived_profile_counts_its_range_in_minutes() -> None:
    text = ipa_ca.short_lived(CA_EC_SUBSYSTEM, datetime.timedelta(minutes=6))
    assert "policyset.serverCertSet.2.default.params.range=6\n" in text
    assert "policyset.serverCertSet.2.default.params.rangeUnit=minute\n" in text
    assert "policyset.serverCertSet.2.constraint.params.range=720\n" in text  # a maximum
    again = ipa_ca.short_lived(text, datetime.timedelta(minutes=8))
    assert again.count("rangeUnit=minute") == 1 and "params.range=8\n" in again


def test_a_profile_without_a_validity_default_is_refused() -> None:
    with pytest.raises(ipa_ca.SetupError, match="validityDefaultImpl"):
        ipa_ca.short_lived("profileId=x\n", datetime.timedelta(minutes=6))


system_certs = load("services/ca/system_certs.py")


class FakeDirectory:
    """Records the modifications map_to_same_users makes (our logic, not 389-ds)."""

    def __init__(self, users: list[str]) -> None:
        self.users, self.added = users, []
        self.filters: list[str] = []

    def find(self, base: str, filterstr: str) -> list[str]:
        self.filters.append(f"{base} {filterstr}")
        return self.users

    def add_value(self, dn: str, attr: str, value: bytes) -> None:
        self.added.append((dn, attr, value))


def _cert(serial: int) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    issuer = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "EXAMPLE.TEST"),
                        x509.NameAttribute(NameOID.COMMON_NAME, "Certificate Authority")])
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "EXAMPLE.TEST"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "CA Subsystem")])
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(key.public_key()).serial_number(serial)
            .not_valid_before(NOW).not_valid_after(NOW + datetime.timedelta(days=720))
            .sign(key, hashes.SHA256()))


def test_dogtags_user_mapping_is_written_as_dogtag_reads_it() -> None:
    assert system_certs.description(_cert(4)) == (
        "2;4;CN=Certificate Authority,O=EXAMPLE.TEST;CN=CA Subsystem,O=EXAMPLE.TEST")


def test_dns_are_printed_as_dogtag_prints_them() -> None:
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "EXAMPLE.TEST"),
                      x509.NameAttribute(NameOID.EMAIL_ADDRESS, "caadmin@example.test"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "PKI Administrator")])
    assert system_certs.dogtag_dn(name) == (
        "CN=PKI Administrator,E=caadmin@example.test,O=EXAMPLE.TEST")
    odd = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "#a,b+c ")])
    assert system_certs.dogtag_dn(odd) == "CN=\\#a\\,b\\+c\\ "


def test_every_user_of_the_old_certificate_maps_the_new_one_too() -> None:
    old, new = _cert(4), _cert(19)
    directory = FakeDirectory(["uid=CA-ca-8443,ou=people,o=ipaca",
                               "uid=pkidbuser,ou=people,o=ipaca"])
    system_certs.map_to_same_users(directory, "ou=people,o=ipaca", old, new)
    assert directory.filters == ["ou=people,o=ipaca (description=2;4;*)"]
    added = [(dn.split(",")[0], attr) for dn, attr, _ in directory.added]
    assert added == [("uid=CA-ca-8443", "userCertificate;binary"),
                     ("uid=CA-ca-8443", "description"),
                     ("uid=pkidbuser", "userCertificate;binary"),
                     ("uid=pkidbuser", "description")]
    assert directory.added[1][2].startswith(b"2;19;")  # added beside the old: no replace


def test_a_renewal_is_staged_whole_then_marked(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(system_certs, "STAGED_DIR", str(tmp_path / "certs"))
    cert = system_certs.SystemCert("subsystem", "subsystemCert cert-pki-tomcat")
    assert system_certs.pending([cert]) == []
    system_certs.stage(cert, _cert(19))
    assert system_certs.pending([cert]) == [cert]
    assert sorted(p.name for p in (tmp_path / "certs").iterdir()) == [
        "subsystem.crt", "subsystem.crt.ipabuild-renewed"]
    assert b"BEGIN CERTIFICATE" in (tmp_path / "certs" / "subsystem.crt").read_bytes()


def test_a_renewal_request_renews_by_serial_through_caManualRenewal() -> None:
    assert system_certs.renewal_request(0x13) == {
        "ProfileID": "caManualRenewal", "Renewal": True, "SerialNumber": "0x13", "Input": []}


def _ca_review(bypass: str = "false") -> dict:
    """Dogtag 10.10's agent review of the CA certificate's renewal, trimmed to the
    policies (its shape as GET /ca/rest/agent/certrequests/<id> answered on a stack)."""
    def attribute(name: str, value: str, syntax: str = "string") -> dict:
        return {"name": name, "Value": value,
                "Descriptor": {"Syntax": syntax, "Constraint": None, "Description": name,
                               "DefaultValue": None}}
    return {"requestId": "11", "requestType": "renewal", "ProfileID": "caCACert",
            "ProfilePolicySet": [{"policies": [
                {"id": None, "def": {
                    "classId": None, "id": "Subject Name Default",
                    "policyAttribute": [attribute("name", "CN=Certificate Authority")],
                    "params": []}},
                {"id": None, "def": {"classId": None, "id": "CA Certificate Validity Default",
                                     "policyAttribute": [
                                         attribute("notBefore", "2026-12-07 01:19:59"),
                                         attribute("notAfter", "2046-12-07 01:19:59"),
                                         attribute("bypassCAnotafter", bypass, "boolean")],
                                     "params": []}}]}]}


def test_the_ca_renewal_review_lets_the_new_certificate_outlast_the_old() -> None:
    review = system_certs.extend_ca_validity(_ca_review())
    values = {item["name"]: item["Value"]
              for policy in review["ProfilePolicySet"][0]["policies"]
              for item in policy["def"]["policyAttribute"]}
    # Only the bypass changes: the dates stay what the profile's range gave.
    assert values == {"name": "CN=Certificate Authority", "notBefore": "2026-12-07 01:19:59",
                      "notAfter": "2046-12-07 01:19:59", "bypassCAnotafter": "true"}


def test_a_review_without_the_ca_validity_default_is_refused() -> None:
    review = _ca_review()
    del review["ProfilePolicySet"][0]["policies"][1]
    with pytest.raises(system_certs.SystemCertError, match="bypassCAnotafter"):
        system_certs.extend_ca_validity(review)


def test_only_the_ca_certificate_is_published_beside_the_old() -> None:
    certs = system_certs.of_config({"system_certificates": [
        {"id": "ca_signing", "nickname": "caSigningCert cert-pki-tomcat CA",
         "publish": ["cn=CAcert,cn=ipa,cn=etc,dc=example,dc=test"]},
        {"id": "sslserver", "nickname": "Server-Cert cert-pki-tomcat"}]})
    assert [(c.cert_id, c.self_signed) for c in certs] == [("ca_signing", True),
                                                           ("sslserver", False)]


@pytest.fixture
def setup_files(tmp_path, monkeypatch):
    """ipa_ca's setup inputs and records under tmp_path: ipa-ca.json naming one
    certificate, one FreeIPA profile, the setup record and the renewer's state."""
    config = tmp_path / "ipa-ca.json"
    config.write_text(json.dumps({"certificates": [{"name": "http-tls"}]}))
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "caIPAserviceCert.UPGRADE.cfg").write_text("profileId=caIPAserviceCert\n")
    monkeypatch.setattr(ipa_ca, "CONFIG", str(config))
    monkeypatch.setattr(ipa_ca, "PROFILES_DIR", str(profiles))
    monkeypatch.setattr(ipa_ca, "SETUP_RECORD", str(tmp_path / "ipa-setup.json"))
    monkeypatch.setattr(ipa_ca, "RENEWAL_STATE", str(tmp_path / "renewal.json"))
    return tmp_path


def _record_setup(settings, not_after: datetime.datetime, failures: int = 0) -> None:
    renewal = ipa_ca.renewal
    state = renewal.State()
    record = state.record("http-tls")
    record.succeeded(7, not_after, NOW, renewed=False)
    record.failures = failures
    state.save(ipa_ca.RENEWAL_STATE)
    Path(ipa_ca.SETUP_RECORD).write_text(json.dumps(
        {"fingerprint": ipa_ca.setup_fingerprint(settings), "at": "2026-12-07T01:58:07Z"}))


SETTINGS = ipa_ca.Settings(datetime.timedelta(days=28), datetime.timedelta(hours=1), None)


def test_a_restart_with_the_same_image_and_valid_certificates_skips_the_setup(setup_files) -> None:
    _record_setup(SETTINGS, datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=300))
    assert ipa_ca.unchanged_since_last_setup(ipa_ca.setup_fingerprint(SETTINGS), SETTINGS) \
        == "2026-12-07T01:58:07Z"


def test_a_changed_profile_or_config_means_a_full_setup(setup_files) -> None:
    _record_setup(SETTINGS, datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=300))
    (setup_files / "profiles" / "caIPAserviceCert.UPGRADE.cfg").write_text("changed\n")
    assert ipa_ca.unchanged_since_last_setup(ipa_ca.setup_fingerprint(SETTINGS), SETTINGS) is None
    test_only = ipa_ca.Settings(SETTINGS.renew_before, SETTINGS.check_every,
                                datetime.timedelta(minutes=5))
    assert ipa_ca.setup_fingerprint(test_only) != ipa_ca.setup_fingerprint(SETTINGS)


@pytest.mark.parametrize(("days_left", "failures"), [(10, 0), (300, 1), (-1, 0)])
def test_a_certificate_due_failing_or_expired_means_a_full_setup(setup_files, days_left,
                                                                 failures) -> None:
    _record_setup(SETTINGS, datetime.datetime.now(datetime.UTC)
                  + datetime.timedelta(days=days_left), failures)
    assert ipa_ca.unchanged_since_last_setup(ipa_ca.setup_fingerprint(SETTINGS), SETTINGS) is None


def test_no_record_means_a_full_setup(setup_files) -> None:
    assert ipa_ca.unchanged_since_last_setup(ipa_ca.setup_fingerprint(SETTINGS), SETTINGS) is None
