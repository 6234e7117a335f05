"""Dogtag's own certificates (OCSP signing, audit signing, subsystem, Tomcat's TLS),
renewed as FreeIPA renews them, in two halves around a Tomcat restart.

On a FreeIPA server certmonger tracks them in Dogtag's NSS database with the
``dogtag-ipa-ca-renew-agent`` helper: it has Dogtag renew each one by serial (same key,
same subject), runs ``stop_pkicad`` before saving it, then ``renew_ca_cert``, which
writes the certificate into CS.cfg, updates the LDAP entries that map it, publishes it
under cn=ca_renewal for replicas, and starts Dogtag again. Here:

* while Dogtag runs (``request``): the renewal through Dogtag's REST API with the
  caManualRenewal profile and an agent's approval, as ``pki-server cert-create --renew``
  and ``cert-fix`` do; the new certificate is staged as ``/etc/pki/pki-tomcat/certs/
  <id>.crt`` (where ``pki-server cert-import`` reads it) with a marker, written whole;
* while Tomcat is stopped (``install``, run by the entrypoint between two Tomcat runs):
  ``pki-server cert-del`` and ``cert-import`` put it into the NSS database and CS.cfg,
  then each people entry that maps the old certificate maps the new one as well
  (``cainstance.update_people_entry``) and cn=<nickname>,cn=ca_renewal gets a copy
  (``update_ca_renewal_entry``). A staged certificate that fails to install stays staged
  and the old one stays in use; nothing half-installed is ever served.
"""

from __future__ import annotations

import base64
import os
import subprocess
from dataclasses import dataclass
from typing import Any

import derived_keys  # beside this file in the image (/usr/local/lib/ipabuild)
from cryptography import x509
from cryptography.hazmat.backends import default_backend
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

INSTANCE = "pki-tomcat"
NSSDB = f"/etc/pki/{INSTANCE}/alias"
STAGED_DIR = f"/etc/pki/{INSTANCE}/certs"
STAGED_SUFFIX = ".ipabuild-renewed"  # marker beside <id>.crt: staged, not installed yet


class SystemCertError(Exception):
    """A step of a system certificate's renewal that failed: the message says which."""


@dataclass(frozen=True)
class SystemCert:
    """One of Dogtag's system certificates, by pki-server's ID and its NSS nickname.
    ``publish`` names the directory entries that hold a copy in ``cACertificate;binary``
    (the IPA CA's own certificate: cn=CAcert and FreeIPA's certificate store), which
    get the renewed one beside the old."""

    cert_id: str  # pki-server's: ca_signing, ca_ocsp_signing, ..., subsystem, sslserver
    nickname: str
    publish: tuple[str, ...] = ()

    @property
    def self_signed(self) -> bool:
        return bool(self.publish)

    @property
    def staged(self) -> str:
        return os.path.join(STAGED_DIR, f"{self.cert_id}.crt")

    @property
    def marker(self) -> str:
        return self.staged + STAGED_SUFFIX


def of_config(config: dict[str, Any]) -> list[SystemCert]:
    return [SystemCert(item["id"], item["nickname"], tuple(item.get("publish", ())))
            for item in config.get("system_certificates", [])]


def current(cert: SystemCert, nssdb: str = NSSDB) -> x509.Certificate:
    """The certificate Dogtag's NSS database holds under the nickname."""
    done = subprocess.run(["certutil", "-L", "-d", nssdb, "-n", cert.nickname, "-a"],
                          capture_output=True, check=False)
    if done.returncode != 0 or b"BEGIN CERTIFICATE" not in done.stdout:
        raise SystemCertError(f"no certificate '{cert.nickname}' in {nssdb}: "
                              f"{done.stderr.decode(errors='replace').strip()}")
    return x509.load_pem_x509_certificate(done.stdout, default_backend())


def stage(cert: SystemCert, renewed: x509.Certificate) -> None:
    """Write the renewed certificate where ``pki-server cert-import`` reads it, then the
    marker; each file written aside and renamed, so a crash leaves no half file."""
    for path, data in ((cert.staged, renewed.public_bytes(serialization.Encoding.PEM)),
                       (cert.marker, str(renewed.serial_number).encode())):
        derived_keys.write_whole(path, data, 0o660)


def pending(certs: list[SystemCert]) -> list[SystemCert]:
    return [cert for cert in certs if os.path.exists(cert.marker)]


# Attribute names as Dogtag's X500Name prints them (emailAddress is E=, not the OID).
DN_NAMES = {NameOID.COMMON_NAME: "CN", NameOID.ORGANIZATION_NAME: "O",
            NameOID.ORGANIZATIONAL_UNIT_NAME: "OU", NameOID.COUNTRY_NAME: "C",
            NameOID.LOCALITY_NAME: "L", NameOID.STATE_OR_PROVINCE_NAME: "ST",
            NameOID.EMAIL_ADDRESS: "E", NameOID.USER_ID: "UID",
            NameOID.DOMAIN_COMPONENT: "DC", NameOID.SERIAL_NUMBER: "SERIALNUMBER"}


def dogtag_dn(name: x509.Name) -> str:
    """``name`` as Dogtag prints it (most significant RDN last, RFC 4514 escaping), the
    form its certificate-to-user mapping compares."""
    def escaped(value: str) -> str:
        out = "".join(f"\\{c}" if c in ',+"\\<>;=' else c for c in value)
        if out[:1] in ("#", " "):
            out = "\\" + out
        return out[:-1] + "\\ " if out.endswith(" ") else out
    rdns = []
    for rdn in reversed(list(name.rdns)):
        rdns.append("+".join(f"{DN_NAMES.get(a.oid, a.oid.dotted_string)}={escaped(str(a.value))}"
                             for a in rdn))
    return ",".join(rdns)


def description(cert: x509.Certificate) -> str:
    """Dogtag's certificate mapping of a user (``2;serial;issuer;subject``), as
    ``cainstance.update_people_entry`` writes it."""
    return f"2;{cert.serial_number};{dogtag_dn(cert.issuer)};{dogtag_dn(cert.subject)}"


def pki_server(*argv: str) -> None:
    done = subprocess.run(["pki-server", *argv, "-i", INSTANCE], capture_output=True,
                          check=False)
    if done.returncode != 0:
        output = (done.stderr or done.stdout).decode(errors="replace").strip()
        raise SystemCertError(f"pki-server {' '.join(argv)}: {output[-400:]}")


def install(cert: SystemCert, directory: Any, suffix: str, ipaca_base: str) -> x509.Certificate:
    """With Tomcat stopped: the staged certificate into the NSS database and CS.cfg
    (pki-server), the people entry mapping the old one, and cn=ca_renewal; the marker
    goes last, so an interrupted install is repeated."""
    with open(cert.staged, "rb") as handle:
        renewed = x509.load_pem_x509_certificate(handle.read(), default_backend())
    old = current(cert)
    if old.public_key().public_bytes(serialization.Encoding.DER,
                                     serialization.PublicFormat.SubjectPublicKeyInfo) != \
            renewed.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo):
        raise SystemCertError(f"{cert.staged} is not for the key of '{cert.nickname}'")
    if old.serial_number != renewed.serial_number:
        pki_server("cert-del", cert.cert_id)
        pki_server("cert-import", cert.cert_id)
    der = renewed.public_bytes(serialization.Encoding.DER)
    for dn in cert.publish:  # the IPA CA's: trusted beside the old one by every consumer
        directory.add_value(dn, "cACertificate;binary", der)
    map_to_same_users(directory, ipaca_base, old, renewed)
    renewal = f"cn={cert.nickname},cn=ca_renewal,cn=ipa,cn=etc,{suffix}"
    directory.ensure(renewal, {"objectClass": ["top", "pkiUser", "nsContainer"],
                               "cn": [cert.nickname]})
    directory.replace(renewal, "userCertificate;binary", der)
    os.unlink(cert.marker)
    return renewed


def map_to_same_users(directory: Any, ipaca_base: str, old: x509.Certificate,
                      renewed: x509.Certificate) -> list[str]:
    """Each Dogtag user the old certificate authenticates (its ``description`` mapping)
    gets the renewed one as well (``update_people_entry``); the old value stays until it
    expires, so whoever still presents the old certificate keeps working meanwhile."""
    users = directory.find(ipaca_base, f"(description=2;{old.serial_number};*)")
    for dn in users:
        directory.add_value(dn, "userCertificate;binary",
                            renewed.public_bytes(serialization.Encoding.DER))
        directory.add_value(dn, "description", description(renewed).encode())
    return users


def renewal_request(serial: int) -> dict[str, Any]:
    """Dogtag's enrollment request renewing certificate ``serial`` (caManualRenewal: the
    same subject and key, the original profile's validity; an agent approves it)."""
    return {"ProfileID": "caManualRenewal", "Renewal": True,
            "SerialNumber": hex(serial), "Input": []}


def extend_ca_validity(review: dict[str, Any]) -> dict[str, Any]:
    """The agent's review of the CA certificate's own renewal, changed so that the new
    certificate gets the profile's full range from now (caCACert: 7305 days). Dogtag's
    CAValidityDefault caps a CA certificate at its issuer's not-after, and the issuer of
    a self-signed CA is itself, so a plain renewal would end when the old one does; the
    agent may set the default's ``bypassCAnotafter`` in the review (read in Dogtag 10.10's
    ``CAValidityDefault.setValue``), which is all this changes."""
    found = False
    for policy_set in review.get("ProfilePolicySet", []):
        for policy in policy_set.get("policies", []):
            for item in (policy.get("def") or {}).get("policyAttribute", []):
                if item.get("name") == "bypassCAnotafter":
                    item["Value"] = "true"
                    found = True
    if not found:
        raise SystemCertError("Dogtag's review of the CA certificate's renewal has no "
                              "CA validity default (bypassCAnotafter) to extend")
    return review


def b64(cert: x509.Certificate) -> str:
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
