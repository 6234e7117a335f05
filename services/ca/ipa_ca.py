"""IPA's side of the split stack's Dogtag, set up by the ca service each time it starts.

FreeIPA's installer does this in one root process (``ipaserver/install/cainstance.py``)
holding the Directory Manager password, the Dogtag admin certificate and FreeIPA's
Python at once. In the split stack only the ca service holds the first two, and its
image (bullseye, for Dogtag 10.10) cannot run FreeIPA 4.12's Python, so the same steps
run here over Dogtag's REST API and LDAP, with FreeIPA's own data: its certificate
profiles (``/usr/share/ipa/profiles``, substituted as ``ipautil.template_str`` does) and
its list of included profiles (``INCLUDED_PROFILES``, read from FreeIPA's source).

Steps, each a no-op when already done (so a newer image completes an older volume):

* ``certificates``: for each certificate in ipa-ca.json, a key derived from its seed
  secret (derived_keys.py) is certified by Dogtag unless the published entry already
  holds a valid certificate for that key; the RA agent is registered as a Dogtag agent
  (``__create_ca_agent``);
* ``profiles``: IPA's profiles imported into Dogtag and recorded under cn=certprofiles
  (``import_included_profiles``);
* ``ipa_ca_entry``: cn=ipa,cn=cas,cn=ca with the host authority's ID
  (``ensure_ipa_authority_entry``);
* ``default_caacl``: the CA ACL hosts_services_caIPAserviceCert (``ensure_default_caacl``);
* ``ca_service_entry``: cn=CA under the master entry, so ``ca_is_enabled`` is true;
* ``subject_base``: ipaCertificateSubjectBase on cn=ipaConfig, the certificates' subject
  base (``ca.set_subject_base_in_config``; host enrolment's ``join`` reads it);
* ``ca_certificate_store``: the IPA CA's certificate in FreeIPA's certificate store,
  cn=<REALM> IPA CA,cn=certificates,cn=ipa,cn=etc, trusted for every use, as the
  installer's ``certstore.put_ca_cert_nss`` writes it (``ipa-client-install`` reads it
  there; cn=CAcert, the compat copy, is the entrypoint's).

Usage: ``python3 ipa_ca.py setup`` (the entrypoint runs it as Tomcat starts; it waits for
Dogtag to answer). The renewer, which renews what this issued, is renewer.py.
"""

from __future__ import annotations

import ast
import contextlib
import datetime
import hashlib
import json
import os
import string
import sys
import tempfile
import time
import urllib.parse
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ldap
import requests
from cryptography import x509
from cryptography.hazmat.backends import default_backend
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

sys.path.insert(0, "/usr/local/lib/ipabuild")
import derived_keys
import renewal
import system_certs

CONFIG = os.environ.get("IPA_CA_CONFIG", "/usr/share/ipabuild/ipa-ca.json")
PROFILES_DIR = "/usr/share/ipa/profiles"
FREEIPA_DOGTAG_SOURCE = "/usr/share/ipabuild/freeipa/ipapython-dogtag.py"
ADMIN_P12 = "/etc/pki/ipabuild-client/ca_admin_cert.p12"
CA_PEM = os.environ.get("IPA_CA_PEM", "/tmp/ipabuild-ca/ca.pem")
# Where the renewer keeps its record of each certificate (renewal.py), on the data volume.
RENEWAL_STATE = os.environ.get("IPABUILD_RENEWAL_STATE", "/var/lib/pki/ipabuild/renewal.json")
RENEWAL_SUMMARY = "/tmp/ipabuild-ca/renewal-summary"
# ipaserver/install/cainstance.py's substitutions for the profiles (__get_profile_config).
IPA_CA_RECORD = "ipa-ca"
# The service certificates' profile: Dogtag's caECServerCert (EC keys, approved by an
# agent) with FreeIPA's subjectAltName policy from caIPAserviceCert (the request's names,
# then the CN), so one certificate names the server and the service's own host.
DOGTAG_PROFILES_DIR = "/usr/share/pki/ca/profiles/ca"
SAN_PROFILE = "ipabuildECServerCertSAN"
ID_PKINIT_SAN = "1.3.6.1.5.2.2"
# FreeIPA's KDC profile asks for RSA keys; the split's keys are derived EC P-256 keys
# (derived_keys.py), which MIT's PKINIT takes too: the profile accepts both key types,
# as Dogtag's own caUserCert does (keyType "-").
EC_TOO = {"KDCs_PKINIT_Certs"}
SAN_POLICY = """policyset.serverCertSet.11.constraint.class_id=noConstraintImpl
policyset.serverCertSet.11.constraint.name=No Constraint
policyset.serverCertSet.11.default.class_id=userExtensionDefaultImpl
policyset.serverCertSet.11.default.name=User Supplied Extension Default
policyset.serverCertSet.11.default.params.userExtOID=2.5.29.17
"""
ACME_AGENT_GROUP = "Enterprise ACME Administrators"


# Dogtag 10.10's pkispawn certificate for Tomcat has no subjectAltName; urllib3 then
# checks its CN (what the warning is about), which is the ca service's name.
warnings.filterwarnings("ignore", message=".*subjectAltName.*")


class SetupError(Exception):
    """A step that cannot finish: the message says which and why."""


def log(message: str) -> None:
    print(f"ipa_ca: {message}", file=sys.stderr, flush=True)


def included_profiles(path: str = FREEIPA_DOGTAG_SOURCE) -> list[tuple[str, str, bool]]:
    """FreeIPA's ``INCLUDED_PROFILES`` (ipapython/dogtag.py): (id, description, store)."""
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
                isinstance(target, ast.Name) and target.id == "INCLUDED_PROFILES"
                for target in node.targets):
            if not isinstance(node.value, (ast.Set, ast.List, ast.Tuple)):
                break
            return sorted((ast.literal_eval(call.args[0]), ast.literal_eval(call.args[1]),
                           bool(ast.literal_eval(call.args[2])))
                          for call in node.value.elts if isinstance(call, ast.Call))
    raise SetupError(f"no INCLUDED_PROFILES set in {path}: FreeIPA's source changed")


def profile_text(profile_id: str, config: dict[str, Any]) -> bytes:
    """The profile as FreeIPA imports it (``__get_profile_config``)."""
    path = os.path.join(PROFILES_DIR, f"{profile_id}.cfg")
    with open(path, encoding="utf-8") as handle:
        template = string.Template(handle.read())
    text = template.substitute(
        DOMAIN=config["domain"], IPA_CA_RECORD=IPA_CA_RECORD,
        CRL_ISSUER="CN=Certificate Authority,o=ipaca", SUBJECT_DN_O=config["subject_base"],
        ACME_AGENT_GROUP=ACME_AGENT_GROUP)
    return (with_ec_keys(text, profile_id) if profile_id in EC_TOO else text).encode()


def with_ec_keys(text: str, profile_id: str) -> str:
    """``text`` with its key constraint widened to EC keys as well as RSA ones."""
    lines = text.splitlines()
    constraint = [i for i, line in enumerate(lines)
                  if line.endswith(".constraint.params.keyType=RSA")]
    if len(constraint) != 1:
        raise SetupError(f"{profile_id}: no single RSA key constraint to widen: FreeIPA's "
                         "profile changed")
    prefix = lines[constraint[0]].rsplit("keyType=", 1)[0]
    lines[constraint[0]] = prefix + "keyType=-"
    sizes = next(i for i, line in enumerate(lines) if line.startswith(prefix + "keyParameters="))
    lines[sizes] += ",nistp256,nistp384,nistp521"
    return "\n".join(lines) + "\n"


def san_profile_text(directory: str = DOGTAG_PROFILES_DIR) -> bytes:
    """``SAN_PROFILE``: Dogtag's caECServerCert with caIPAserviceCert's policy 11 (the
    requested subjectAltName) before its own policy 12 (the CN copied into it)."""
    with open(os.path.join(directory, "caECServerCert.cfg"), encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    policies = "policyset.serverCertSet.list=1,2,3,4,5,6,7,8,12"
    if policies not in lines:
        raise SetupError(f"caECServerCert's policies are not `{policies}`: Dogtag changed; "
                         f"check {SAN_PROFILE}'s policy numbers")
    kept = [line for line in lines
            if not line.startswith(("profileId=", "classId=", "name=", "desc="))]
    kept[kept.index(policies)] = "policyset.serverCertSet.list=1,2,3,4,5,6,7,8,11,12"
    header = [f"profileId={SAN_PROFILE}", "classId=caEnrollImpl",
              "name=ipabuild: server certificates with ECC keys and requested names",
              "desc=caECServerCert plus the subjectAltName of the request (as "
              "caIPAserviceCert): one certificate for the server name and the service's host"]
    return ("\n".join(header + kept) + "\n" + SAN_POLICY).encode()


def _der(tag: int, content: bytes) -> bytes:
    length = len(content)
    if length < 0x80:
        return bytes([tag, length]) + content
    size = (length.bit_length() + 7) // 8
    return bytes([tag, 0x80 | size]) + length.to_bytes(size, "big") + content


def krb5_principal_name(principal: str) -> bytes:
    """RFC 4556's KRB5PrincipalName (the id-pkinit-san otherName) of ``name@REALM``,
    DER-encoded: the KDC's certificate names krbtgt/REALM@REALM this way, and clients
    check it before they trust the KDC's PKINIT reply."""
    name, _, realm = principal.rpartition("@")
    components = name.split("/")
    name_type = 2 if components[0] == "krbtgt" else 1  # NT-SRV-INST, NT-PRINCIPAL
    strings = b"".join(_der(0x1B, part.encode()) for part in components)
    principal_name = _der(0x30, _der(0xA0, _der(0x02, bytes([name_type])))
                          + _der(0xA1, _der(0x30, strings)))
    return _der(0x30, _der(0xA0, _der(0x1B, realm.encode())) + _der(0xA1, principal_name))


def certificate_request(key: Any, subject: str, dns_names: tuple[str, ...] = (),
                        krb5_principal: str | None = None) -> str:
    """A PKCS#10 request for ``subject`` (given most significant RDN first, as Dogtag
    prints it) signed by ``key``, asking for ``dns_names`` (and a Kerberos principal,
    for a KDC) as its subjectAltName."""
    rdns = [part.split("=", 1) for part in subject.split(",")]
    oids = {"CN": NameOID.COMMON_NAME, "O": NameOID.ORGANIZATION_NAME}
    name = x509.Name([x509.NameAttribute(oids[kind.strip().upper()], value.strip())
                      for kind, value in reversed(rdns)])
    builder = x509.CertificateSigningRequestBuilder().subject_name(name)
    alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    if krb5_principal:
        alt_names.append(x509.OtherName(x509.ObjectIdentifier(ID_PKINIT_SAN),
                                        krb5_principal_name(krb5_principal)))
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names),
                                        critical=False)
    csr = builder.sign(key, hashes.SHA256(), default_backend())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


class Dogtag:
    """Dogtag's REST API as its admin (the PKCS#12 pkispawn left on the config volume)."""

    def __init__(self, url: str, admin_pem: str) -> None:
        self.url = url.rstrip("/") + "/ca/rest"
        self.session = requests.Session()
        self.session.verify = CA_PEM
        self.session.cert = admin_pem
        self.session.headers.update({"Accept": "application/json"})

    def call(self, method: str, path: str, expect: tuple[int, ...] = (200,),
             **kwargs: Any) -> requests.Response:
        try:
            response = self.session.request(method, self.url + path, timeout=60, **kwargs)
        except requests.RequestException as exc:
            raise SetupError(f"Dogtag {method} {path}: {exc}") from exc
        if response.status_code not in expect:
            raise SetupError(f"Dogtag {method} {path} answered {response.status_code}: "
                             f"{response.text[:300]}")
        return response

    def login(self) -> None:
        self.call("GET", "/account/login")

    def issue(self, csr_pem: str, profile: str) -> x509.Certificate:
        """Submit ``csr_pem`` to ``profile`` and approve it as the admin (an agent)."""
        return self.submit({"ProfileID": profile, "Renewal": False, "Input": [{
            "id": "i1", "ClassID": "certReqInputImpl", "Name": "Certificate Request Input",
            "Attribute": [{"name": "cert_request_type", "Value": "pkcs10"},
                          {"name": "cert_request", "Value": csr_pem}]}]}, profile)

    def renew(self, serial: int, ca_certificate: bool = False) -> x509.Certificate:
        """Certificate ``serial`` renewed (same subject and key), approved as an agent;
        ``ca_certificate``: it is the CA's own, whose validity the agent lets run past
        the old one's end (system_certs.extend_ca_validity)."""
        edit = system_certs.extend_ca_validity if ca_certificate else None
        return self.submit(system_certs.renewal_request(serial), f"renewal of {serial}", edit)

    def submit(self, body: dict[str, Any], what: str,
               edit: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
               ) -> x509.Certificate:
        entry = self.call("POST", "/certrequests", json=body).json()["entries"][0]
        if entry["requestStatus"] not in ("pending", "complete"):
            raise SetupError(f"Dogtag refused the request ({what}): "
                             f"{entry.get('errorMessage')}")
        request_id = entry["requestURL"].rsplit("/", 1)[1]
        if entry["requestStatus"] == "pending":
            review = self.call("GET", f"/agent/certrequests/{request_id}").text
            if edit is not None:
                try:
                    review = json.dumps(edit(json.loads(review)))
                except (ValueError, system_certs.SystemCertError) as exc:
                    raise SetupError(f"Dogtag request {request_id} ({what}): {exc}") from exc
            self.call("POST", f"/agent/certrequests/{request_id}/approve", expect=(200, 204),
                      data=review, headers={"Content-Type": "application/json"})
        cert_id = self.call("GET", f"/certrequests/{request_id}").json().get("certId")
        if not cert_id:
            raise SetupError(f"Dogtag request {request_id} ({what}) issued no certificate")
        encoded = self.call("GET", f"/certs/{int(cert_id, 16)}").json()["Encoded"]
        return x509.load_pem_x509_certificate(encoded.encode(), default_backend())

    def ensure_agent(self, uid: str, cert: x509.Certificate, groups: list[str]) -> None:
        """``uid`` as an agent whose certificate is ``cert`` (``__create_ca_agent``)."""
        quoted = urllib.parse.quote(uid)
        if self.call("GET", f"/admin/users/{quoted}", expect=(200, 404)).status_code == 404:
            self.call("POST", "/admin/users", expect=(200, 201), json={
                "id": uid, "UserID": uid, "FullName": uid, "Type": "agentType", "State": "1"})
            log(f"added Dogtag user {uid}")
        pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        found = self.call("GET", f"/admin/users/{quoted}/certs").json()
        listed = found.get("Cert") or found.get("entries") or []  # 10.10 says "Cert"
        if not any(int(str(item.get("SerialNumber", "0")), 0) == cert.serial_number
                   for item in listed):
            self.call("POST", f"/admin/users/{quoted}/certs", expect=(200, 201),
                      json={"Encoded": pem})
            log(f"Dogtag user {uid} authenticates with certificate serial {cert.serial_number}")
        for group in groups:
            path = f"/admin/groups/{urllib.parse.quote(group)}/members"
            if self.call("GET", f"{path}/{quoted}", expect=(200, 404)).status_code == 404:
                self.call("POST", path, expect=(200, 201), json={"id": uid})
                log(f"Dogtag user {uid} joined {group}")

    def create_profile(self, profile_id: str, text: bytes) -> None:
        """Create and enable ``profile_id`` unless it exists (then it is left as it is)."""
        if self.call("GET", f"/profiles/{profile_id}", expect=(200, 404)).status_code == 404:
            self.call("POST", "/profiles/raw", expect=(200, 201), data=text,
                      headers={"Content-Type": "application/octet-stream"})
            self.call("POST", f"/profiles/{profile_id}?action=enable",
                      expect=(200, 204, 400, 409))
            log(f"created the profile {profile_id}")

    def ensure_profile(self, profile_id: str, text: bytes) -> None:
        """Create or replace ``profile_id`` and enable it (``_create_dogtag_profile``)."""
        raw = {"Content-Type": "application/octet-stream"}
        status = self.call("GET", f"/profiles/{profile_id}", expect=(200, 404)).status_code
        if status == 404:
            self.call("POST", "/profiles/raw", expect=(200, 201), data=text, headers=raw)
        else:
            self.call("POST", f"/profiles/{profile_id}?action=disable", expect=(200, 204, 400, 409))
            self.call("PUT", f"/profiles/{profile_id}/raw", data=text, headers=raw)
        self.call("POST", f"/profiles/{profile_id}?action=enable", expect=(200, 204, 400, 409))

    def host_authority(self) -> dict[str, Any]:
        return self.call("GET", "/authorities/host-authority").json()


class Directory:
    """IPA's directory (and o=ipaca) as Directory Manager, over the stack's network."""

    def __init__(self, uri: str, password: str) -> None:
        self.conn = ldap.initialize(uri)
        self.conn.set_option(ldap.OPT_NETWORK_TIMEOUT, 30)
        try:
            self.conn.simple_bind_s("cn=Directory Manager", password)
        except ldap.LDAPError as exc:
            raise SetupError(f"binding to {uri} as Directory Manager: {exc}") from exc

    def get(self, dn: str, attrs: list[str]) -> dict[str, list[bytes]] | None:
        try:
            found = self.conn.search_s(dn, ldap.SCOPE_BASE, "(objectClass=*)", attrs)
        except ldap.NO_SUCH_OBJECT:
            return None
        return {key.lower(): values for key, values in found[0][1].items()}

    def children(self, dn: str, filterstr: str) -> list[str]:
        try:
            return [child for child, _ in self.conn.search_s(dn, ldap.SCOPE_ONELEVEL,
                                                             filterstr, ["cn"])]
        except ldap.NO_SUCH_OBJECT:
            return []

    def ensure(self, dn: str, attrs: dict[str, list[str]]) -> bool:
        """Add ``dn`` unless it exists (FreeIPA's ``ensure_entry``); True if added."""
        if self.get(dn, ["objectClass"]) is not None:
            return False
        self.conn.add_s(dn, [(name, [value.encode() for value in values])
                             for name, values in attrs.items()])
        log(f"added {dn}")
        return True

    def add(self, dn: str, attrs: dict[str, list[bytes]]) -> None:
        """Add ``dn`` with binary values (certificates, keys) as they are."""
        self.conn.add_s(dn, list(attrs.items()))

    def add_value(self, dn: str, attr: str, value: bytes) -> None:
        with contextlib.suppress(ldap.TYPE_OR_VALUE_EXISTS):
            self.conn.modify_s(dn, [(ldap.MOD_ADD, attr, [value])])

    def replace(self, dn: str, attr: str, value: bytes) -> None:
        self.conn.modify_s(dn, [(ldap.MOD_REPLACE, attr, [value])])

    def find(self, base: str, filterstr: str) -> list[str]:
        try:
            return [dn for dn, _ in self.conn.search_s(base, ldap.SCOPE_SUBTREE, filterstr,
                                                       ["1.1"]) if dn]
        except ldap.NO_SUCH_OBJECT:
            return []

    def delete_value(self, dn: str, attr: str, value: bytes) -> None:
        with contextlib.suppress(ldap.NO_SUCH_ATTRIBUTE):
            self.conn.modify_s(dn, [(ldap.MOD_DELETE, attr, [value])])


def dns_names_of(cert: x509.Certificate) -> set[str]:
    try:
        extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return set()
    return set(extension.value.get_values_for_type(x509.DNSName))


def valid_for(cert: x509.Certificate, key: Any, dns_names: tuple[str, ...] = ()) -> bool:
    """Whether ``cert`` certifies ``key``, names every one of ``dns_names`` and is valid
    now (whether it is due for renewal is renewal.decide's question)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    not_before, not_after = derived_keys.validity(cert)
    return (derived_keys.certifies(cert, key) and not_before <= now < not_after
            and set(dns_names) <= dns_names_of(cert))


# certstore's key policy for trust flags "CT,C,C" (the IPA CA): server and client
# authentication, e-mail protection, code signing (ipalib.x509's EKU_* OIDs).
CA_KEY_EXT_USAGE = ["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2", "1.3.6.1.5.5.7.3.4",
                    "1.3.6.1.5.5.7.3.3"]


def ca_certificate_store_entry(cert: x509.Certificate, realm: str) -> dict[str, list[bytes]]:
    """The attributes of the IPA CA's entry in FreeIPA's certificate store, as
    ``certstore.init_ca_entry`` makes them (subject and issuer as RFC 4514 strings, most
    significant RDN last, as ipapython's DN prints them)."""
    der = cert.public_bytes(serialization.Encoding.DER)
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    subject = cert.subject.rfc4514_string().replace("\\;", "\\3b")
    issuer = cert.issuer.rfc4514_string().replace("\\;", "\\3b")
    return {
        "objectClass": [b"ipaCertificate", b"pkiCA", b"ipaKeyPolicy"],
        "cn": [f"{realm} IPA CA".encode()],
        "ipaCertSubject": [subject.encode()],
        "ipaCertIssuerSerial": [f"{issuer};{cert.serial_number}".encode()],
        "ipaPublicKey": [spki],
        "cACertificate;binary": [der],
        "ipaKeyTrust": [b"trusted"],
        "ipaKeyExtUsage": [oid.encode() for oid in CA_KEY_EXT_USAGE],
        "ipaConfigString": [b"ipaCA", b"compatCA"],
    }


def ensure_subject_base(config: dict[str, Any], directory: Directory) -> None:
    dn = f"cn=ipaConfig,cn=etc,{config['suffix']}"
    entry = directory.get(dn, ["ipaCertificateSubjectBase"])
    if entry is None:
        raise SetupError(f"{dn} does not exist (the ldap service's directory makes it)")
    if not entry.get("ipacertificatesubjectbase"):
        directory.add_value(dn, "ipaCertificateSubjectBase", config["subject_base"].encode())
        log(f"set the certificates' subject base {config['subject_base']} on {dn}")


def ensure_ca_certificate_store(config: dict[str, Any], directory: Directory) -> None:
    with open(CA_PEM, "rb") as handle:
        cert = x509.load_pem_x509_certificate(handle.read(), default_backend())
    container = f"cn=certificates,cn=ipa,cn=etc,{config['suffix']}"
    directory.ensure(container, {"objectClass": ["top", "nsContainer"],
                                 "cn": ["certificates"]})
    dn = f"cn={config['realm']} IPA CA,{container}"
    if directory.get(dn, ["cn"]) is None:
        directory.add(dn, ca_certificate_store_entry(cert, config["realm"]))
        log(f"added the IPA CA's certificate to FreeIPA's certificate store at {dn}")


def published(spec: dict[str, Any], directory: Directory) -> list[x509.Certificate]:
    """The certificates on ``spec``'s publish entry (FreeIPA keeps every issued one)."""
    dn = spec["publish"]
    if spec.get("agent"):  # FreeIPA's renewal entry for the RA (cn=ca_renewal)
        directory.ensure(dn, {"objectClass": ["top", "pkiUser", "nsContainer"],
                              "cn": [dn.split(",", 1)[0].split("=", 1)[1]]})
    entry = directory.get(dn, ["userCertificate;binary"])
    if entry is None:
        raise SetupError(f"{dn} does not exist: the certificate '{spec['name']}' is "
                         f"published there (the ldap service's directory makes it)")
    return [x509.load_der_x509_certificate(der, default_backend())
            for der in entry.get("usercertificate;binary", [])]


def ensure_certificate(spec: dict[str, Any], dogtag: Dogtag, directory: Directory,
                       record: renewal.Record, renew_before: datetime.timedelta,
                       force: bool = False, ipaca_people: str = "ou=people,o=ipaca",
                       ) -> tuple[Any, x509.Certificate, bool]:
    """The certificate of ``spec``'s derived key: the newest published one, unless none
    is valid or renewal.decide says it is due; then Dogtag issues a new one for the same
    key, published beside the old one (which stays in use until each service has picked
    up the new one; expired ones are removed). Returns (key, certificate, issued)."""
    key = derived_keys.derive(derived_keys.read_secret(spec["seed"]), spec["name"])
    now = datetime.datetime.now(datetime.timezone.utc)
    certs = published(spec, directory)
    dns_names = tuple(spec.get("dns_names", ()))
    usable = [cert for cert in certs if valid_for(cert, key, dns_names)]
    current = max(usable, key=lambda item: derived_keys.validity(item)[1], default=None)
    not_after = derived_keys.validity(current)[1] if current is not None else None
    decision = renewal.decide(not_after, now, renew_before, record)
    if force and current is not None:
        decision = renewal.Decision("due", now, "renewal asked for")
    if decision.kind != "due":
        assert current is not None
        if decision.kind == "valid":
            record.succeeded(current.serial_number, derived_keys.validity(current)[1], now,
                             renewed=False)
        else:
            log(f"{spec['name']}: {decision.reason}; next attempt {decision.at:%H:%M:%S}")
        return key, current, False
    try:
        cert = dogtag.issue(certificate_request(key, spec["subject"], dns_names,
                                                spec.get("krb5_principal")),
                            spec["profile"])
        directory.add_value(spec["publish"], "userCertificate;binary",
                            cert.public_bytes(serialization.Encoding.DER))
        if spec.get("agent"):
            dogtag.ensure_agent(spec["agent"]["uid"], cert, spec["agent"]["groups"])
            if current is not None:  # both map to the agent until the old one expires
                system_certs.map_to_same_users(directory, ipaca_people, current, cert)
    except (SetupError, ldap.LDAPError) as exc:
        record.failed(now, str(exc).splitlines()[0][:300])
        if current is None:
            raise SetupError(f"issuing {spec['name']} ({decision.reason}): {exc}") from exc
        log(f"renewing {spec['name']} failed ({decision.reason}): {exc}; keeping serial "
            f"{current.serial_number}, next attempt {record.next_attempt}")
        return key, current, False
    _, cert_not_after = derived_keys.validity(cert)
    record.succeeded(cert.serial_number, cert_not_after, now, renewed=current is not None)
    verb = "renewed" if current is not None else "issued"
    log(f"{verb} {spec['name']} ({decision.reason}): {spec['subject']}, serial "
        f"{cert.serial_number}, valid until {cert_not_after:%Y-%m-%d %H:%M:%S}Z, "
        f"published at {spec['publish']}")
    for old in certs:
        if derived_keys.validity(old)[1] <= now:
            directory.delete_value(spec["publish"], "userCertificate;binary",
                                   old.public_bytes(serialization.Encoding.DER))
            log(f"removed {spec['name']}'s expired serial {old.serial_number}")
    return key, cert, True


def wait_until_served(uri: str, name: str, timeout: float = 120.0) -> None:
    """Until ``uri`` answers StartTLS with a certificate the IPA CA issued (its service
    restarts to load it)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        conn = ldap.initialize(uri)
        try:
            conn.set_option(ldap.OPT_NETWORK_TIMEOUT, 5)
            conn.set_option(ldap.OPT_X_TLS_CACERTFILE, CA_PEM)
            conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_DEMAND)
            conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)
            conn.start_tls_s()
            conn.unbind_s()
            log(f"{uri} serves the {name} certificate")
            return
        except ldap.LDAPError as exc:
            last = exc
        time.sleep(0.5)
    raise SetupError(f"{uri} did not serve the {name} certificate within {timeout:.0f}s "
                     f"(last error: {last}); the ldap service's log says why")


def ensure_profiles(config: dict[str, Any], dogtag: Dogtag, directory: Directory) -> None:
    container = f"cn=certprofiles,cn=ca,{config['suffix']}"
    directory.ensure(f"cn=ca,{config['suffix']}", {"objectClass": ["top", "nsContainer"],
                                                   "cn": ["ca"]})
    directory.ensure(container, {"objectClass": ["top", "nsContainer"], "cn": ["certprofiles"]})
    for profile_id, description, store_issued in included_profiles():
        dn = f"cn={profile_id},{container}"
        if directory.get(dn, ["cn"]) is not None:
            # An older stack imported it for RSA keys only: import it again (once; a
            # Dogtag profile update is three requests, on every start otherwise).
            if profile_id in EC_TOO and ".constraint.params.keyType=-" not in \
                    dogtag.call("GET", f"/profiles/{profile_id}/raw").text:
                dogtag.ensure_profile(profile_id, profile_text(profile_id, config))
            continue
        dogtag.ensure_profile(profile_id, profile_text(profile_id, config))
        directory.ensure(dn, {"objectClass": ["ipacertprofile"], "cn": [profile_id],
                              "description": [description],
                              "ipaCertProfileStoreIssued": ["TRUE" if store_issued else "FALSE"]})
        log(f"imported FreeIPA's profile {profile_id} into Dogtag")


def ensure_ipa_ca_entry(config: dict[str, Any], dogtag: Dogtag, directory: Directory) -> None:
    suffix = config["suffix"]
    directory.ensure(f"cn=cas,cn=ca,{suffix}", {"objectClass": ["top", "nsContainer"],
                                                "cn": ["cas"]})
    if directory.get(f"cn=ipa,cn=cas,cn=ca,{suffix}", ["cn"]) is not None:
        return
    authority = dogtag.host_authority()
    directory.ensure(f"cn=ipa,cn=cas,cn=ca,{suffix}", {
        "objectClass": ["top", "ipaca"], "cn": ["ipa"], "description": ["IPA CA"],
        "ipaCaId": [authority["id"]], "ipaCaIssuerDN": [authority["issuerDN"]],
        "ipaCaSubjectDN": [authority["dn"]]})


def ensure_default_caacl(config: dict[str, Any], directory: Directory) -> None:
    suffix = config["suffix"]
    container = f"cn=caacls,cn=ca,{suffix}"
    directory.ensure(container, {"objectClass": ["top", "nsContainer"], "cn": ["caacls"]})
    if directory.children(container, "(objectClass=ipacaacl)"):
        return
    directory.ensure(f"cn=hosts_services_caIPAserviceCert,{container}", {
        "objectClass": ["ipaassociation", "ipacaacl"],
        "cn": ["hosts_services_caIPAserviceCert"], "ipaUniqueID": ["autogenerate"],
        "ipaEnabledFlag": ["TRUE"], "hostCategory": ["all"], "serviceCategory": ["all"],
        "ipaMemberCertProfile": [f"cn=caIPAserviceCert,cn=certprofiles,cn=ca,{suffix}"]})


def ensure_ca_service_entry(config: dict[str, Any], directory: Directory) -> None:
    """cn=CA under the master, as ``configuredService``: ``ca_is_enabled`` looks only for
    the entry, and CA discovery (``find_providing_server``), which wants an *enabled*
    service, then falls back to default.conf's ``ca_host``: the ca service, not the
    master entry's host (the ldap service)."""
    master = f"cn={config['master']},cn=masters,cn=ipa,cn=etc,{config['suffix']}"
    if directory.get(master, ["cn"]) is None:
        raise SetupError(f"{master} does not exist (the ldap service's directory makes it)")
    directory.ensure(f"cn=CA,{master}", {"objectClass": ["nsContainer", "ipaConfigObject"],
                                         "cn": ["CA"], "ipaConfigString": ["configuredService"]})


def admin_identity(password: bytes) -> tuple[Any, x509.Certificate]:
    """The admin's key and certificate, from the PKCS#12 pkispawn left."""
    with open(ADMIN_P12, "rb") as handle:
        key, cert, _ = pkcs12.load_key_and_certificates(handle.read(), password,
                                                         default_backend())
    if key is None or cert is None:
        raise SetupError(f"{ADMIN_P12} holds no key and certificate")
    return key, cert


def admin_pem(password: bytes) -> str:
    """The admin's key and certificate as a 0600 PEM on tmpfs, for requests."""
    return client_pem(*admin_identity(password))


def client_pem(key: Any, cert: x509.Certificate) -> str:
    """A client's key and certificate as a 0600 PEM on tmpfs, for requests."""
    fd, path = tempfile.mkstemp(prefix="ipa-ca-client.", suffix=".pem", dir="/tmp")
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
        handle.write(cert.public_bytes(serialization.Encoding.PEM))
    return path


@dataclass(frozen=True)
class Settings:
    """The renewer's knobs, from the container's environment."""

    renew_before: datetime.timedelta  # IPABUILD_RENEW_BEFORE (default 28d, certmonger's)
    check_every: datetime.timedelta  # IPABUILD_RENEW_CHECK (default 1h)
    # IPABUILD_CERT_VALIDITY, for tests only: the profiles of ipa-ca.json's certificates
    # issue certificates valid this long (minutes), so that renewal happens in a test.
    test_validity: datetime.timedelta | None

    @classmethod
    def from_environment(cls) -> Settings:
        def duration(name: str, default: str | None) -> datetime.timedelta | None:
            value = os.environ.get(name, default)
            if value is None or value == "":
                return None
            try:
                return renewal.parse_duration(value)
            except renewal.DurationError as exc:
                raise SetupError(f"{name}: {exc}") from exc
        before = duration("IPABUILD_RENEW_BEFORE", "28d")
        every = duration("IPABUILD_RENEW_CHECK", "1h")
        assert before is not None and every is not None
        return cls(before, every, duration("IPABUILD_CERT_VALIDITY", None))


def short_lived(text: str, validity: datetime.timedelta) -> str:
    """``text`` (a Dogtag profile) issuing certificates valid for ``validity``, in
    minutes: its validity defaults' range in Dogtag's ``rangeUnit=minute`` (supported by
    10.10's ValidityDefault), for the renewal test."""
    lines = [line for line in text.splitlines() if ".default.params.rangeUnit=" not in line]
    prefixes = [line.split(".default.class_id=")[0] for line in lines
                if line.endswith(".default.class_id=validityDefaultImpl")]
    if not prefixes:
        raise SetupError("a profile without validityDefaultImpl cannot be made short-lived")
    minutes = max(1, int(validity.total_seconds() // 60))
    for prefix in prefixes:
        lines = [f"{prefix}.default.params.range={minutes}"
                 if line.startswith(f"{prefix}.default.params.range=") else line
                 for line in lines]
        lines.append(f"{prefix}.default.params.rangeUnit=minute")
    return "\n".join(lines) + "\n"


def make_short_lived(config: dict[str, Any], dogtag: Dogtag,
                     validity: datetime.timedelta) -> None:
    for profile_id in sorted({spec["profile"] for spec in config["certificates"]}):
        text = dogtag.call("GET", f"/profiles/{profile_id}/raw").text
        dogtag.ensure_profile(profile_id, short_lived(text, validity).encode())
    log(f"TEST ONLY (IPABUILD_CERT_VALIDITY): the service certificates' profiles issue "
        f"certificates valid for {validity}")


class Session:
    """What a round of IPA's CA work holds: the directory as Directory Manager, Dogtag
    as its admin, and client PEMs on tmpfs (removed on exit)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        p12_secret = "ca-pkcs12-password"
        if not os.path.exists(os.path.join(derived_keys.SECRETS_DIR, p12_secret)):
            p12_secret = "ca-admin-password"  # what init used when the first is absent
        with open(os.path.join(derived_keys.SECRETS_DIR, p12_secret), "rb") as handle:
            p12_password = handle.read().strip()
        dm_password = os.path.join(derived_keys.SECRETS_DIR, "ldap-dm-password")
        with open(dm_password, encoding="utf-8") as handle:
            self.directory = Directory(config["ldap_uri"], handle.read().strip())
        self.p12_password = p12_password
        self.pems = [admin_pem(p12_password)]
        self.dogtag = Dogtag(config["dogtag_url"], self.pems[0])

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *_exc: object) -> None:
        for path in self.pems:
            with contextlib.suppress(OSError):
                os.unlink(path)
        with contextlib.suppress(ldap.LDAPError):
            self.directory.conn.unbind_s()

    def as_client(self, key: Any, cert: x509.Certificate) -> Dogtag:
        """Dogtag as the holder of ``cert`` (a profile that authenticates FreeIPA's RA,
        raCertAuth)."""
        self.pems.append(client_pem(key, cert))
        return Dogtag(self.config["dogtag_url"], self.pems[-1])

    def certify(self, state: renewal.State, settings: Settings, wait_served: bool,
                force: frozenset[str] = frozenset()) -> list[renewal.Decision]:
        """ensure_certificate for each certificate of ipa-ca.json, in the file's order,
        recorded in ``state``; returns when each is next looked at."""
        ready: dict[str, tuple[Any, x509.Certificate]] = {}
        upcoming = []
        now = datetime.datetime.now(datetime.timezone.utc)
        for spec in self.config["certificates"]:
            submitter = self.dogtag
            if spec.get("submit_as"):
                submitter = self.as_client(*ready[spec["submit_as"]])
            record = state.record(spec["name"])
            key, cert, issued = ensure_certificate(spec, submitter, self.directory, record,
                                                   settings.renew_before,
                                                   spec["name"] in force)
            ready[spec["name"]] = (key, cert)
            upcoming.append(renewal.decide(derived_keys.validity(cert)[1], now,
                                           settings.renew_before, record))
            # A certificate whose service restarts to serve it (served_at) comes last, as
            # that restart interrupts the directory; the first setup waits for it, so
            # that the CA is healthy only when the stack is settled.
            if issued and wait_served and spec.get("served_at"):
                wait_until_served(spec["served_at"], spec["name"])
        state.checked_at = renewal._iso(now)
        state.renew_before = str(settings.renew_before)
        return upcoming

def load_config() -> dict[str, Any]:
    with open(CONFIG, encoding="utf-8") as handle:
        return json.load(handle)


TOMCAT_PID = "/tmp/ipabuild-ca/tomcat.pid"  # the entrypoint's record of Tomcat's PID
SETUP_MARKER = "/tmp/ipabuild-ca/ipa-setup-done"  # the entrypoint's, after each setup


def tomcat_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DogtagNotRunning(SetupError):
    """Dogtag's CA subsystem did not start in time (exit status 3)."""


class TomcatGone(SetupError):
    """Tomcat stopped while setup waited for it (exit status 4)."""


def wait_for_dogtag(url: str, timeout: float) -> None:
    """Until Dogtag says its CA subsystem runs (getStatus, the readiness check pki-server
    and IPA use), while the Tomcat the entrypoint recorded runs."""
    with open(TOMCAT_PID, encoding="utf-8") as handle:
        tomcat = int(handle.read().strip())
    status = url.rstrip("/") + "/ca/admin/ca/getStatus"
    started = time.monotonic()
    said = 0.0
    while time.monotonic() - started < timeout:
        if not tomcat_alive(tomcat):
            raise TomcatGone(f"Tomcat (PID {tomcat}) stopped")
        with contextlib.suppress(requests.RequestException):
            if "<Status>running</Status>" in requests.get(status, verify=CA_PEM, timeout=3).text:
                return
        if time.monotonic() - said >= 30:
            said = time.monotonic()
            log(f"waiting for Dogtag to answer on {url}")
        time.sleep(0.25)
    raise DogtagNotRunning(f"Dogtag's CA subsystem is not running after {timeout:.0f}s")


SETUP_RECORD = "/var/lib/pki/ipabuild/ipa-setup.json"  # the last full setup (volume)


def setup_fingerprint(settings: Settings) -> str:
    """What a full setup depends on: ipa-ca.json, FreeIPA's profiles, this code and the
    test-only validity. A new image changes it; a restart does not."""
    digest = hashlib.sha256(str(settings.test_validity).encode())
    profiles = sorted(os.path.join(PROFILES_DIR, name) for name in os.listdir(PROFILES_DIR))
    paths = [CONFIG, os.path.abspath(__file__), *profiles]
    for path in paths:
        with open(path, "rb") as handle:
            digest.update(path.encode() + b"\0" + handle.read())
    return digest.hexdigest()


def unchanged_since_last_setup(fingerprint: str, settings: Settings) -> str | None:
    """When the last full setup had this fingerprint and the renewer's records show every
    certificate valid beyond the renewal window, with no failure: its time, else None.
    Then a restart needs no setup (as `ipactl start` runs no installer step); the
    renewer, which starts right after, looks at every certificate anyway."""
    try:
        with open(SETUP_RECORD, encoding="utf-8") as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return None
    if record.get("fingerprint") != fingerprint:
        return None
    state = renewal.State.load(RENEWAL_STATE)
    names = [spec["name"] for spec in load_config()["certificates"]]
    now = datetime.datetime.now(datetime.timezone.utc)
    for name in names:
        held = state.records.get(name)
        if held is None or held.failures or held.not_after is None:
            return None
        not_after = renewal._parse_iso(held.not_after)
        if renewal.decide(not_after, now, settings.renew_before, held).kind != "valid":
            return None
    return str(record.get("at", "?"))


def setup() -> None:
    config = load_config()
    settings = Settings.from_environment()
    fingerprint = setup_fingerprint(settings)
    wait_for_dogtag(config["dogtag_url"], float(os.environ.get("IPA_CA_START_TIMEOUT", "180")))
    done_at = unchanged_since_last_setup(fingerprint, settings)
    if done_at is not None:
        log(f"IPA's side of the CA is as set up at {done_at} (same image, every certificate "
            f"valid beyond the renewal window): nothing to set up")
        return
    with Session(config) as session:
        session.dogtag.login()
        started = time.monotonic()
        directory, dogtag = session.directory, session.dogtag
        ensure_profiles(config, dogtag, directory)
        dogtag.create_profile(SAN_PROFILE, san_profile_text())
        if settings.test_validity is not None:
            make_short_lived(config, dogtag, settings.test_validity)
        ensure_ipa_ca_entry(config, dogtag, directory)
        ensure_default_caacl(config, directory)
        ensure_ca_service_entry(config, directory)
        ensure_subject_base(config, directory)
        ensure_ca_certificate_store(config, directory)
        state = renewal.State.load(RENEWAL_STATE)
        try:
            session.certify(state, settings, wait_served=True)
        finally:
            state.save(RENEWAL_STATE)
            write_summary(state, settings)
        log(f"IPA's CA setup complete in {time.monotonic() - started:.1f}s")
    now = renewal._iso(datetime.datetime.now(datetime.timezone.utc))
    derived_keys.write_whole(SETUP_RECORD, json.dumps({"fingerprint": fingerprint,
                                                       "at": now}).encode(), 0o660)


def write_summary(state: renewal.State, settings: Settings) -> None:
    """The state in one line on tmpfs, which the health check prints (``status``)."""
    line = state.summary(datetime.datetime.now(datetime.timezone.utc), settings.renew_before)
    with contextlib.suppress(OSError):
        derived_keys.write_whole(RENEWAL_SUMMARY, (line + "\n").encode(), 0o644)


USAGE = "usage: ipa_ca.py setup | profiles"


def main(argv: list[str]) -> int:
    if argv == ["profiles"]:  # the image build checks FreeIPA's data is readable
        for profile_id, _, _ in included_profiles():
            print(profile_id)
        return 0
    if argv != ["setup"]:
        print(USAGE, file=sys.stderr)
        return 2
    try:
        setup()
    except DogtagNotRunning:
        return 3
    except TomcatGone:
        return 4
    except (SetupError, derived_keys.KeyError_, OSError, ldap.LDAPError) as exc:
        print(f"ipa_ca: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
