"""The CA's run: Tomcat in the foreground, IPA's side of the CA beside it, and the
Tomcat restarts the renewer asks for.

What pki-tomcatd@.service and ipa-server-install's CA steps do on a FreeIPA server, in
one non-root process (the entrypoint has sourced Tomcat's environment and checked the
volumes, then execs this):

* **Tomcat** (``catalina.sh run``) starts at once, as this process's child; its PID is
  recorded for ipa_ca.py and the renewer. SIGTERM and SIGINT go to it, and this process
  exits with its status (0 when it was stopped), so the restart policy sees a crash.
* **IPA's side** runs beside Tomcat's start, off its critical path: once ldap answers
  LDAP, the IPA CA's certificate is published at ``cn=CAcert,cn=ipa,cn=etc`` (FreeIPA's
  certstore location, where clients and the http service find it) and written to
  ``ca.pem``; then ``ipa_ca.py setup`` (profiles, RA agent, the services' certificates)
  waits for Dogtag itself and sets up what is missing. Only its success writes the
  marker the health check looks for. Then the renewer (``renewer.py run``) runs for as
  long as this Tomcat does; should it crash, it starts again a minute later.
* **Renewed system certificates** are installed while Tomcat is down: the renewer leaves
  ``restart-tomcat`` and stops Tomcat; this process then runs ``renewer.py
  install-staged``, publishes the CA certificate again (it may be the one renewed) and
  starts Tomcat again.

Usage: ``python3 ca_run.py`` (the environment says where ldap is; IPA_SUFFIX names the
directory's suffix).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, "/usr/local/lib/ipabuild")
from ca_init import InitError, log, secret  # the init's log format and secret reader
from child_process import Child

LIB = Path("/usr/local/lib/ipabuild")
RUN_DIR = Path("/tmp/ipabuild-ca")
TOMCAT_PID = RUN_DIR / "tomcat.pid"        # ipa_ca.py and the renewer read it
SETUP_MARKER = RUN_DIR / "ipa-setup-done"  # the health check's: IPA's side is set up
RESTART_FLAG = RUN_DIR / "restart-tomcat"  # the renewer's: install staged certificates
CA_PEM = RUN_DIR / "ca.pem"                # the IPA CA's certificate, for ipa_ca.py
TOMCAT = ["/usr/share/tomcat9/bin/catalina.sh", "run"]
RENEWER_RETRY = 60.0
LDAP_POLL = 0.25

# ipa_ca.py setup's exit statuses (its main) and what they mean here.
SETUP_DONE, DOGTAG_NOT_RUNNING, TOMCAT_GONE = 0, 3, 4


class RunError(Exception):
    """Something the CA cannot run without, said in one line with what to do."""


@dataclass(frozen=True)
class Place:
    """Where the CA's pieces are, from the image's environment."""

    instance: str
    ldap_uri: str
    suffix: str
    database: str
    start_timeout: str

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Place:
        host, port = environ.get("CA_LDAP_HOST", "ldap"), environ.get("CA_LDAP_PORT", "3389")
        return cls(instance="pki-tomcat", ldap_uri=f"ldap://{host}:{port}",
                   suffix=environ["IPA_SUFFIX"],
                   database=environ.get("CA_LDAP_BASE_DN", "o=ipaca"),
                   start_timeout=environ.get("CA_START_TIMEOUT", "180"))

    @property
    def ca_cert_dn(self) -> str:
        return f"cn=CAcert,cn=ipa,cn=etc,{self.suffix}"


def signing_nickname(cs_cfg: str) -> str:
    """``ca.signing.nickname`` from the instance's CS.cfg."""
    for line in cs_cfg.splitlines():
        if line.startswith("ca.signing.nickname="):
            return line.split("=", 1)[1].strip()
    raise RunError("CS.cfg names no ca.signing.nickname: the instance is incomplete; "
                   "remove the CA's volumes and run the init step again")


def signing_certificate(place: Place) -> bytes:
    """The CA signing certificate (DER) from the instance's NSS database."""
    conf = Path(f"/etc/pki/{place.instance}")
    nickname = signing_nickname((conf / "ca" / "CS.cfg").read_text(encoding="utf-8"))
    done = subprocess.run(["certutil", "-L", "-d", str(conf / "alias"), "-n", nickname, "-r"],
                          capture_output=True, check=False)
    if done.returncode != 0 or not done.stdout:
        raise RunError(f"no CA signing certificate '{nickname}' in {conf / 'alias'}")
    return done.stdout


def publish_ca_certificate(place: Place, dm_password: str) -> None:
    """``ca.pem`` for this container, and the certificate at cn=CAcert for everyone (the
    entry is made by ldap's 19-ipabuild-ca-certificate.update; a value already there is
    left as it is)."""
    import ldap
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        der = signing_certificate(place)
        pem = x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        partial = CA_PEM.with_suffix(".partial")
        partial.write_bytes(pem)
        partial.replace(CA_PEM)
    except (OSError, ValueError) as exc:  # CS.cfg or the NSS database unreadable, bad DER
        raise RunError(f"reading the CA signing certificate failed: {exc}") from exc
    conn = ldap.initialize(place.ldap_uri)
    conn.set_option(ldap.OPT_NETWORK_TIMEOUT, 30)
    try:
        conn.simple_bind_s("cn=Directory Manager", dm_password)
        conn.modify_s(place.ca_cert_dn, [(ldap.MOD_ADD, "cACertificate;binary", [der])])
    except ldap.TYPE_OR_VALUE_EXISTS:
        return  # already there
    except ldap.NO_SUCH_OBJECT as exc:
        raise RunError(f"{place.ca_cert_dn} does not exist: the ldap image predates it; "
                       f"start a newer ldap image (its update files add the entry)") from exc
    except ldap.LDAPError as exc:
        raise RunError(f"publishing the CA certificate at {place.ca_cert_dn} failed: "
                       f"{exc}") from exc
    finally:
        with contextlib.suppress(ldap.LDAPError):
            conn.unbind_s()
    log(f"published the CA certificate at {place.ca_cert_dn}")


def wait_ldap_answers(place: Place, tomcat_ended: threading.Event) -> bool:
    """Until ldap answers a real LDAP search (not just an open port), as Dogtag's own
    start waits for it (WaitForDatabase); False if Tomcat ended meanwhile."""
    import ldap

    said = 0.0
    while not tomcat_ended.is_set():
        conn = ldap.initialize(place.ldap_uri)
        conn.set_option(ldap.OPT_NETWORK_TIMEOUT, 5)
        try:
            conn.search_s("", ldap.SCOPE_BASE, "(objectClass=*)", ["namingContexts"])
            return True
        except ldap.LDAPError:
            pass
        finally:
            with contextlib.suppress(ldap.LDAPError):
                conn.unbind_s()
        if time.monotonic() - said >= 30:
            said = time.monotonic()
            log(f"waiting for ldap to answer LDAP at {place.ldap_uri} (the CA's database "
                f"{place.database} lives in the ldap service)")
        tomcat_ended.wait(LDAP_POLL)
    return False


def dm_password() -> str:
    try:
        return secret("ldap-dm-password")
    except InitError as exc:
        raise RunError(str(exc)) from exc


class Tomcat(Child):
    """catalina.sh run; a stop of the container also cancels a restart the renewer
    asked for."""

    def start(self) -> None:
        super().start()
        assert self.process is not None
        if self.stopping:  # a stop that came while Popen ran found no process to signal
            self.process.send_signal(signal.SIGTERM)
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        TOMCAT_PID.write_text(f"{self.process.pid}\n", encoding="utf-8")

    def forward(self, signum: int, frame: Any) -> None:
        RESTART_FLAG.unlink(missing_ok=True)
        super().forward(signum, frame)


def setup_outcome(status: int) -> tuple[bool, bool, str | None]:
    """What ipa_ca.py setup's exit status means: (healthy, stop Tomcat, what to log)."""
    if status == SETUP_DONE:
        return True, False, None
    if status == DOGTAG_NOT_RUNNING:
        # Dogtag does not retry a failed engine start: stop, so that the container
        # restarts (restart policy, or Kubernetes) and Dogtag starts again.
        return False, True, ("Dogtag's CA subsystem is not running in time (/var/log/pki/"
                             "pki-tomcat/ca/debug.*.log says why); stopping to be restarted")
    if status == TOMCAT_GONE:
        return False, False, None
    return False, False, "IPA's CA setup failed (the line above says why); the CA stays unhealthy"


def stop_run(process: subprocess.Popen[bytes], ended: threading.Event) -> None:
    """SIGTERM to this run's Tomcat, never to a later one (a restart may have started it
    meanwhile), and without waiting: the main loop waits."""
    if not ended.is_set() and process.poll() is None:
        process.send_signal(signal.SIGTERM)


def exit_status(returncode: int) -> int:
    """The container's status for Tomcat's: a signal's death as the shell says it
    (SIGKILL, from the OOM killer: 137), not Python's negative number."""
    return returncode if returncode >= 0 else 128 - returncode


def ipa_side(place: Place, process: subprocess.Popen[bytes], ended: threading.Event) -> None:
    """IPA's side of the CA for one Tomcat run (``process``; see the module's docstring)."""
    SETUP_MARKER.unlink(missing_ok=True)
    try:
        if not wait_ldap_answers(place, ended):
            return
        publish_ca_certificate(place, dm_password())
    except RunError as exc:
        log(f"FATAL: {exc}")
        log("stopping: the CA certificate could not be published (above)")
        stop_run(process, ended)
        return
    status = subprocess.run([sys.executable, str(LIB / "ipa_ca.py"), "setup"], check=False,
                            env={**os.environ, "IPA_CA_START_TIMEOUT": place.start_timeout}
                            ).returncode
    healthy, stop, said = setup_outcome(status)
    if said:
        log(said)
    if stop:
        stop_run(process, ended)
    if not healthy:
        return
    SETUP_MARKER.write_text(
        datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ\n"),
        encoding="utf-8")
    # The renewer: renews IPA's certificates and Dogtag's before they expire, as
    # certmonger does on a FreeIPA server, for as long as this Tomcat runs. It never stops
    # the CA; should it crash, it starts again a minute later.
    while not ended.is_set():
        status = subprocess.run([sys.executable, str(LIB / "renewer.py"), "run"],
                                check=False).returncode
        if ended.is_set():
            return
        log(f"the renewer stopped (exit {status}); starting it again in {RENEWER_RETRY:.0f}s")
        ended.wait(RENEWER_RETRY)


def run(place: Place) -> int:
    tomcat = Tomcat(TOMCAT)
    tomcat.handle_signals()
    while True:
        if tomcat.stopping:  # the container was stopped between two runs
            return 0
        tomcat.start()
        assert tomcat.process is not None
        ended = threading.Event()
        threading.Thread(target=ipa_side, args=(place, tomcat.process, ended),
                         daemon=True).start()
        status = tomcat.process.wait()
        ended.set()
        if tomcat.stopping or not RESTART_FLAG.exists():
            return 0 if tomcat.stopping else exit_status(status)
        RESTART_FLAG.unlink(missing_ok=True)
        log("Tomcat stopped to install renewed system certificates")
        if subprocess.run([sys.executable, str(LIB / "renewer.py"), "install-staged"],
                          check=False).returncode != 0:
            log("installing renewed certificates failed (the line above says why)")
        try:  # the CA's own, if it was renewed: ca.pem and cn=CAcert
            publish_ca_certificate(place, dm_password())
        except RunError as exc:
            log(f"FATAL: {exc}")
            return 1
        log("starting Tomcat again")


def main(argv: list[str]) -> int:
    if argv:
        print(__doc__.strip().split("Usage: ", 1)[1], file=sys.stderr)
        return 2
    try:
        place = Place.from_environment()
    except KeyError as exc:
        log(f"FATAL: {exc.args[0]} is not set (the image sets it)")
        return 1
    return run(place)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
