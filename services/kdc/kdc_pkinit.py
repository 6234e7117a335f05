"""krb5kdc in the foreground, serving anonymous PKINIT with the certificate the IPA CA
issued it.

krb5kdc reads its PKINIT identity only when it starts, and on a new stack the KDC starts
before the CA: krb5kdc then serves password logins only. This process runs krb5kdc as its
child and looks for the KDC's certificate on its master entry
(``cn=KDC,cn=<server>,cn=masters,cn=ipa,cn=etc,<suffix>``, where the ca service publishes
it) over LDAPI: every second until PKINIT is on, then every ``IPABUILD_CERT_POLL`` seconds
(default 300) for renewed certificates, which the ca service's renewer publishes beside
the old ones. When the newest valid certificate for the KDC's key (derived from the
``kdc-pkinit-key-seed`` secret, derived_keys.py) differs from the one served, it writes
it with the key and every valid IPA CA certificate (newest first) into the run
directory, turns kdc.conf's PKINIT lines on, marks ``pkinitEnabled`` on the entry (what
``ipa pkinit-status`` reads) and restarts krb5kdc: a fraction of a second, its state is
all in the directory.

On a new stack the CA publishes this certificate a moment before ldap's own, for which
ldap restarts; ipa-kdb gives up for good when LDAPI does not answer as krb5kdc starts.
So the first switch waits (at most two minutes) until ldap serves a certificate the IPA
CA issued, and krb5kdc starts only once the realm's entry answers.

``RUN_DIR/pkinit`` says what krb5kdc serves ("on" or "off") once it runs: the health
check reads it (and says "settling:" while a published certificate is not served yet).
SIGTERM and SIGINT stop krb5kdc and this process (exit 0); when krb5kdc ends by itself,
this process ends with its status, and the container's restart policy starts it again.

Usage: ``python3 kdc_pkinit.py RUN_DIR -- KRB5KDC-ARGV...``
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, "/usr/local/lib/ipabuild")
import derived_keys
import kdc_setup
from child_process import Child

SEED, LABEL = "kdc-pkinit-key-seed", "kdc-pkinit"
TEMPLATE = "/usr/share/ipabuild/kdc.conf.in"
POLL_UNTIL_ON = 1.0
POLL_AFTERWARDS = float(os.environ.get("IPABUILD_CERT_POLL", "300"))
HOLD_FOR_LDAP = 120.0  # the first switch's longest wait for ldap's own certificate
REALM_WAIT = 120.0  # krb5kdc's start waits this long for the realm's entry to answer
# FreeIPA's kdc.conf.template PKINIT lines, for the files this process writes.
PKINIT_LINES = ("pkinit_identity = FILE:{run}/kdc.crt,{run}/kdc.key",
                "pkinit_anchors = FILE:{run}/ca.pem",
                "pkinit_pool = FILE:{run}/ca.pem",
                "pkinit_indicator = pkinit")
MARKER = "# @PKINIT@"


def log(message: str) -> None:
    """One line as ipabuild_log writes it (lib.sh)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(f"{stamp} ipabuild[kdc]: {message}", file=sys.stderr, flush=True)


def kdc_conf(template: str, run: str, pkinit: bool) -> str:
    """The KDC profile: ``@RUN@`` filled in, the ``# @PKINIT@`` line replaced by the
    PKINIT lines (at its indentation) or by nothing."""
    lines: list[str] = []
    for line in template.replace("@RUN@", run).splitlines():
        stripped = line.lstrip()
        if stripped.startswith(MARKER):
            if pkinit:
                indent = line[:len(line) - len(stripped)]
                lines.extend(indent + entry.format(run=run) for entry in PKINIT_LINES)
            continue
        lines.append(line)
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Bundle:
    """What krb5kdc needs for PKINIT: its certificate, its key and the CA anchors (PEM)."""

    cert: bytes
    key: bytes
    anchors: bytes

    def served_from(self, run: Path) -> bool:
        """Whether ``run`` already holds this certificate and these anchors."""
        try:
            return ((run / "kdc.crt").read_bytes() == self.cert
                    and (run / "ca.pem").read_bytes() == self.anchors)
        except OSError:
            return False

    def write(self, run: Path) -> None:
        """Each file replaced whole (krb5kdc reads them only when it starts)."""
        derived_keys.write_private(str(run / "kdc.key"), self.key)
        derived_keys.write_public(str(run / "ca.pem"), self.anchors)
        derived_keys.write_public(str(run / "kdc.crt"), self.cert)


class Directory(kdc_setup.Ldapi):
    """The IPA directory over ldap's LDAPI socket, as the kdc's setup reaches it."""

    def ldif(self, base: str, *attributes: str) -> str | None:
        """The base entry's attributes as LDIF; None when the directory did not answer."""
        done = self.search(base, *attributes)
        return done.stdout if done.returncode == 0 else None

    def mark_pkinit_enabled(self, dn: str) -> None:
        """FreeIPA's pkinitEnabled marker (already there: nothing to do)."""
        change = (f"dn: {dn}\nchangetype: modify\nadd: ipaConfigString\n"
                  f"ipaConfigString: pkinitEnabled\n")
        subprocess.run(["ldapmodify", *self.auth], input=change,
                       capture_output=True, text=True, check=False)


def published_bundle(directory: Directory, kdc_entry: str, ca_entry: str,
                     key: Any) -> Bundle | None:
    """The newest valid certificate published for ``key`` with the CA anchors, or None."""
    text = directory.ldif(kdc_entry, "userCertificate;binary")
    if not text or "userCertificate;binary::" not in text:
        return None  # the common case until the CA runs: no certificate parsing at all
    cert = derived_keys.select(text, key)
    anchors = derived_keys.anchors(directory.ldif(ca_entry, "cACertificate;binary") or "")
    if cert is None or not anchors:
        return None
    pem = derived_keys.serialization.Encoding.PEM
    return Bundle(cert.public_bytes(pem), derived_keys.private_pem(key),
                  b"".join(anchor.public_bytes(pem) for anchor in anchors))


def ldap_serves_ipa_certificate(address: str, anchors: bytes) -> bool:
    """Whether ldap's StartTLS presents a certificate these anchors verify."""
    host, port = address.rsplit(":", 1)
    with tempfile.NamedTemporaryFile(dir="/tmp", suffix=".pem") as cafile:
        cafile.write(anchors)
        cafile.flush()
        done = subprocess.run(["openssl", "s_client", "-connect", f"{host}:{port}",
                               "-starttls", "ldap", "-CAfile", cafile.name,
                               "-verify_return_error"], stdin=subprocess.DEVNULL,
                              capture_output=True, check=False, timeout=30)
    return done.returncode == 0


class Kdc(Child):
    """krb5kdc, started only once the realm's entry answers: ipa-kdb reads the master key
    from the directory when krb5kdc starts and gives up for good when it cannot."""

    def __init__(self, argv: list[str], directory: Directory, realm_dn: str) -> None:
        super().__init__(argv)
        self.directory, self.realm_dn = directory, realm_dn

    def start(self) -> None:
        """Start krb5kdc once the realm's entry answers (or after REALM_WAIT seconds)."""
        deadline = time.monotonic() + REALM_WAIT
        while not self.directory.answers(self.realm_dn) and time.monotonic() < deadline:
            if self.stopping:
                return
            time.sleep(0.5)
        super().start()


@dataclass
class Watch:
    """Where things are, from the container's environment."""

    run: Path
    directory: Directory
    kdc_entry: str
    ca_entry: str
    realm_dn: str
    ldap_address: str
    template: str

    @classmethod
    def from_environment(cls, run: Path) -> Watch:
        names = kdc_setup.Realm.from_environ(os.environ)
        suffix = names.suffix
        return cls(run=run, directory=Directory(kdc_setup.ldapi_uri(names.socket)),
                   kdc_entry=f"cn=KDC,cn={names.server},cn=masters,cn=ipa,cn=etc,{suffix}",
                   ca_entry=f"cn=CAcert,cn=ipa,cn=etc,{suffix}",
                   realm_dn=names.container_dn,
                   ldap_address=os.environ.get("KDC_DIRECTORY_READY", "ldap:3389"),
                   template=Path(TEMPLATE).read_text())

    def configure(self, pkinit: bool) -> None:
        conf = kdc_conf(self.template, str(self.run), pkinit)
        derived_keys.write_public(str(self.run / "kdc.conf"), conf.encode())

    def served(self, state: str) -> None:
        """What krb5kdc serves, for the health check: written once it runs."""
        derived_keys.write_public(str(self.run / "pkinit"), f"{state}\n".encode())


def describe(bundle: Bundle) -> str:
    cert = derived_keys.x509.load_pem_x509_certificate(bundle.cert)
    return (f"serial={cert.serial_number:02X} "
            f"notAfter={derived_keys.validity(cert)[1]:%Y-%m-%d %H:%M:%SZ}")


def run(watch: Watch, argv: list[str]) -> int:
    try:
        key = derived_keys.derive(derived_keys.read_secret(SEED), LABEL)
    except derived_keys.KeyError_ as exc:
        log(f"{exc}; PKINIT stays off")
        key = None
    bundle = published_bundle(watch.directory, watch.kdc_entry, watch.ca_entry,
                              key) if key is not None else None
    if bundle is not None:
        bundle.write(watch.run)
        watch.configure(pkinit=True)
        watch.served("on")
        watch.directory.mark_pkinit_enabled(watch.kdc_entry)
        log(f"PKINIT on: {describe(bundle)}")
    else:
        watch.configure(pkinit=False)
        watch.served("off")
        log(f"PKINIT off until the ca service publishes the KDC's certificate at "
            f"{watch.kdc_entry}")
    pkinit = bundle is not None
    kdc = Kdc(argv, watch.directory, watch.realm_dn)
    kdc.handle_signals()
    kdc.start()
    interval = POLL_AFTERWARDS if pkinit else POLL_UNTIL_ON
    held_since: float | None = None
    while True:
        if kdc.process is None:  # stopped while waiting for the realm
            return 0
        status = kdc.wait(timeout=interval)
        if status is not None:
            return 0 if kdc.stopping else status
        if kdc.stopping or key is None:
            continue
        found = published_bundle(watch.directory, watch.kdc_entry, watch.ca_entry, key)
        if found is None or (pkinit and found.served_from(watch.run)):
            continue
        if not pkinit:
            held_since = held_since or time.monotonic()
            if (time.monotonic() - held_since < HOLD_FOR_LDAP
                    and not ldap_serves_ipa_certificate(watch.ldap_address, found.anchors)):
                continue
        found.write(watch.run)
        watch.configure(pkinit=True)
        watch.directory.mark_pkinit_enabled(watch.kdc_entry)
        log(f"PKINIT certificate {describe(found)}: restarting krb5kdc to serve it")
        kdc.stop()
        if kdc.stopping:
            return 0
        kdc.start()
        watch.served("on")
        pkinit, interval = True, POLL_AFTERWARDS


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    return run(Watch.from_environment(Path(argv[0])), argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
