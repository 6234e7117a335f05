"""ns-slapd in the foreground, serving TLS with the certificate the IPA CA issued it.

389-ds reads its server certificate only when it starts, and the IPA CA can run only
after the directory (Dogtag's database lives in it). So on a fresh stack ns-slapd first
serves plain LDAP only: dscreate makes no certificate (``self_sign_cert = False``, as
FreeIPA's DsInstance creates its instance; a self-signed placeholder cost 3.7 s of the
first ``up``). The ca service then certifies ldap's key (derived from the
``ldap-tls-key-seed`` secret, derived_keys.py) and publishes the certificate on the
ldap/<fqdn> service entry. This process runs ns-slapd as its child, watches that entry
over LDAPI, and when it holds a valid certificate for the key that the NSS database does
not, imports it (with the IPA CA as a trusted issuer) as ``Server-Cert``, turns
``nsslapd-security`` on if it is off, and restarts ns-slapd: what ipa-server-install
does once its CA exists (``DsInstance.enable_ssl``, then a restart). Later starts serve
the IPA certificate from the first second; a re-issued certificate is picked up the
same way.

SIGTERM and SIGINT go to ns-slapd; this process exits with ns-slapd's status.

Usage: ``python3 slapd_tls.py CONFIG_DIR LDAPI_URI -- NS-SLAPD-ARGV...``
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import tempfile
from typing import Any

import ldap
from cryptography import x509
from cryptography.hazmat.backends import default_backend
from cryptography.hazmat.primitives import serialization

sys.path.insert(0, "/usr/local/lib/ipabuild")
import derived_keys
from child_process import Child

SEED = "ldap-tls-key-seed"
LABEL = "ldap-tls"
NICKNAME = "Server-Cert"   # dscreate's name, which cn=RSA,cn=encryption,cn=config names
CA_NICKNAME = "IPA CA"
# Where TLS listens once it is on (the entrypoint says; lib389's default otherwise).
SECURE_PORT = int(os.environ.get("SLAPD_SECURE_PORT", "636"))
POLL_UNTIL_INSTALLED = 1.0
# Then, for renewed certificates (the ca service's renewer publishes them beside the old
# ones), every IPABUILD_CERT_POLL seconds.
POLL_AFTERWARDS = float(os.environ.get("IPABUILD_CERT_POLL", "300"))


def log(message: str) -> None:
    print(f"slapd_tls: {message}", file=sys.stderr, flush=True)


class Directory:
    """What this process reads over LDAPI (SASL EXTERNAL: ns-slapd's UID is DM here)."""

    def __init__(self, uri: str, suffix: str, service_dn: str) -> None:
        self.uri, self.suffix, self.service_dn = uri, suffix, service_dn

    def _values(self, dn: str, attr: str) -> list[bytes]:
        conn = ldap.initialize(self.uri)
        try:
            conn.sasl_non_interactive_bind_s("EXTERNAL")
            found = conn.search_s(dn, ldap.SCOPE_BASE, "(objectClass=*)", [attr])
        except ldap.NO_SUCH_OBJECT:
            return []
        finally:
            conn.unbind_s()
        return [value for key, values in found[0][1].items() if key.lower() == attr.lower()
                for value in values]

    def certificates(self) -> list[x509.Certificate]:
        return [x509.load_der_x509_certificate(der, default_backend())
                for der in self._values(self.service_dn, "userCertificate;binary")]

    def security_on(self) -> bool:
        """Whether cn=config has ``nsslapd-security: on`` (TLS at ns-slapd's next start)."""
        return self._values("cn=config", "nsslapd-security") == [b"on"]

    def enable_security(self, port: int) -> None:
        """``nsslapd-security: on`` and the secure port, read at ns-slapd's next start:
        the modify FreeIPA's ``DsInstance.__enable_ssl`` makes (dscreate's template
        already holds the cn=RSA entry naming ``Server-Cert``)."""
        conn = ldap.initialize(self.uri)
        try:
            conn.sasl_non_interactive_bind_s("EXTERNAL")
            conn.modify_s("cn=config", [
                (ldap.MOD_REPLACE, "nsslapd-secureport", [str(port).encode()]),
                (ldap.MOD_REPLACE, "nsslapd-security", [b"on"])])
        finally:
            conn.unbind_s()

    def ca_certificates(self) -> list[x509.Certificate]:
        return [x509.load_der_x509_certificate(der, default_backend())
                for der in self._values(f"cn=CAcert,cn=ipa,cn=etc,{self.suffix}",
                                        "cACertificate;binary")]


def newest_valid(certs: list[x509.Certificate], key: Any) -> x509.Certificate | None:
    now = datetime.datetime.now(datetime.timezone.utc)
    usable = [cert for cert in certs if derived_keys.certifies(cert, key)
              and derived_keys.validity(cert)[0] <= now < derived_keys.validity(cert)[1]]
    return max(usable, key=lambda cert: derived_keys.validity(cert)[1]) if usable else None


class NssDatabase:
    """389-ds's NSS database (certutil/pk12util; its password is dscreate's pwdfile.txt)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.pwdfile = os.path.join(directory, "pwdfile.txt")

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(list(argv), check=check, capture_output=True)

    def server_certificate(self) -> x509.Certificate | None:
        done = self._run("certutil", "-L", "-d", self.directory, "-n", NICKNAME, "-r",
                         check=False)
        if done.returncode != 0 or not done.stdout:
            return None
        return x509.load_der_x509_certificate(done.stdout, default_backend())

    def install(self, key: Any, cert: x509.Certificate, cas: list[x509.Certificate]) -> None:
        """Make ``cert`` (with ``key``) the server certificate and trust ``cas``.

        The bundle is first imported into a scratch database: the old certificate is
        removed only once the new one is known to import (ns-slapd would not start with
        none). openssl writes the PKCS#12: NSS refuses the EC key in cryptography's."""
        with tempfile.TemporaryDirectory(dir="/tmp") as work:
            paths = {name: os.path.join(work, name)
                     for name in ("key.pem", "cert.pem", "server.p12", "p12.txt", "scratch")}
            derived_keys.write_private(paths["key.pem"], derived_keys.private_pem(key))
            with open(paths["cert.pem"], "wb") as handle:
                handle.write(cert.public_bytes(serialization.Encoding.PEM))
            derived_keys.write_private(paths["p12.txt"], os.urandom(16).hex().encode())
            self._run("openssl", "pkcs12", "-export", "-inkey", paths["key.pem"],
                      "-in", paths["cert.pem"], "-name", NICKNAME,
                      "-passout", f"file:{paths['p12.txt']}", "-out", paths["server.p12"])
            os.mkdir(paths["scratch"])
            self._run("certutil", "-N", "-d", paths["scratch"], "--empty-password")
            self._run("pk12util", "-i", paths["server.p12"], "-d", paths["scratch"],
                      "-w", paths["p12.txt"])
            for index, ca in enumerate(cas):
                path = os.path.join(work, f"ca{index}.pem")
                with open(path, "wb") as handle:
                    handle.write(ca.public_bytes(serialization.Encoding.PEM))
                name = CA_NICKNAME if index == 0 else f"{CA_NICKNAME} {index}"
                self._run("certutil", "-A", "-d", self.directory, "-f", self.pwdfile,
                          "-n", name, "-t", "CT,,", "-a", "-i", path)
            # -F removes the old certificate with its key: the nickname names one again.
            self._run("certutil", "-F", "-d", self.directory, "-f", self.pwdfile,
                      "-n", NICKNAME, check=False)
            self._run("certutil", "-D", "-d", self.directory, "-n", NICKNAME, check=False)
            self._run("pk12util", "-i", paths["server.p12"], "-d", self.directory,
                      "-k", self.pwdfile, "-w", paths["p12.txt"])


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def wanted(directory: Directory, nss: NssDatabase,
           key: Any) -> tuple[x509.Certificate | None, bool]:
    """(the certificate to install now or None, whether ns-slapd's database already holds
    the newest one the IPA CA issued for the key)."""
    issued = newest_valid(directory.certificates(), key)
    if issued is None:
        return None, False
    current = nss.server_certificate()
    if current is not None and der(current) == der(issued):
        return None, True
    return issued, False


# What one look at the directory leads to.
SOON, IDLE, RESTART = "look again soon", "look again later", "restart ns-slapd"


def look(directory: Directory, nss: NssDatabase, key: Any) -> str:
    """Install the newest certificate the IPA CA issued for ``key`` if ns-slapd's NSS
    database lacks it, and turn TLS on if it is off; RESTART when ns-slapd must start
    again to serve either. A certificate installed while TLS stays off (a turn-on that
    failed, or a stop in between) is turned on at the next look."""
    try:
        pending, serving = wanted(directory, nss, key)
        tls_on = directory.security_on()
    except (ldap.LDAPError, OSError, ValueError):
        return SOON  # not answering yet, or mid-start: the next look sees it
    if pending is None and (tls_on or not serving):
        return IDLE if serving else SOON
    if pending is not None:
        log(f"the IPA CA issued {pending.subject.rfc4514_string()} (serial "
            f"{pending.serial_number}); installing it as {NICKNAME} and restarting ns-slapd")
        try:
            nss.install(key, pending, directory.ca_certificates())
        except subprocess.CalledProcessError as exc:
            log(f"installing the certificate failed ({' '.join(exc.cmd[:2])}: "
                f"{exc.stderr.decode(errors='replace').strip()}); keeping the current one, "
                f"trying again in {POLL_AFTERWARDS:.0f}s")
            return IDLE
    if not tls_on:
        try:
            directory.enable_security(SECURE_PORT)
        except ldap.LDAPError as exc:
            log(f"turning TLS on failed ({exc}); trying again")
            return SOON
        log(f"TLS on, port {SECURE_PORT}: it starts with this first certificate")
    return RESTART


def run(config_dir: str, ldapi_uri: str, slapd_argv: list[str]) -> int:
    realm, domain, suffix = (os.environ["IPA_REALM"], os.environ["IPA_DOMAIN"],
                             os.environ["IPA_SUFFIX"])
    service_dn = (f"krbprincipalname=ldap/ldap.{domain}@{realm},cn=services,cn=accounts,"
                  f"{suffix}")
    try:
        key = derived_keys.derive(derived_keys.read_secret(SEED), LABEL)
    except derived_keys.KeyError_ as exc:
        log(f"{exc}; TLS stays as it is (on with the certificate already in the NSS "
            f"database; off on a new instance, which has none)")
        key = None
    supervisor = Child(slapd_argv)
    supervisor.handle_signals()
    supervisor.start()
    directory = Directory(ldapi_uri, suffix, service_dn)
    nss = NssDatabase(config_dir)
    interval = POLL_UNTIL_INSTALLED
    while True:
        status = supervisor.wait(timeout=interval)
        if status is not None:
            return status
        if supervisor.stopping or key is None:
            continue
        action = look(directory, nss, key)
        if action != RESTART:
            interval = POLL_AFTERWARDS if action == IDLE else interval
            continue
        status = supervisor.stop()
        if supervisor.stopping:
            return status
        supervisor.start()
        interval = POLL_AFTERWARDS


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    config_dir, ldapi_uri, slapd_argv = argv[0], argv[1], argv[3:]
    return run(config_dir, ldapi_uri, slapd_argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
