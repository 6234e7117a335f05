"""The certificate renewer of the ca service: certmonger's role on a FreeIPA server.

It runs beside Tomcat for as long as Tomcat runs (the entrypoint starts it after IPA's
setup) and, every IPABUILD_RENEW_CHECK, renews what renewal.decide says is due:

* IPA's certificates of ipa-ca.json (the services' TLS, the KDC's PKINIT, the RA agent):
  ``ipa_ca.Session.certify``, the same step as the first setup, re-issuing for the same
  derived key;
* Dogtag's admin certificate, which ipa_ca.py and this renewer authenticate with;
* Dogtag's system certificates (system_certs.py): renewed through Dogtag and staged,
  then installed while Tomcat is stopped, which it asks the entrypoint for.

Each round holds a lock, so ``now`` (``ipabuild certs --renew``) and the loop never renew
at once. What it did is in ipa_ca.RENEWAL_STATE (renewal.State), which ``ipabuild certs``
and the health check read.

Usage: ``python3 renewer.py run | now NAME... | install-staged``
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import os
import signal
import sys
import time
from typing import Any

import ldap
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

sys.path.insert(0, "/usr/local/lib/ipabuild")
import derived_keys
import ipa_ca
import renewal
import system_certs

ADMIN_NAME = "ca_admin"  # the admin certificate's name in the renewer's records


def save_admin(key: Any, cert: x509.Certificate, password: bytes) -> None:
    """The renewed admin certificate into the PKCS#12 (and pkispawn's PEM copy beside
    it), each written aside and renamed over the old file."""
    p12 = pkcs12.serialize_key_and_certificates(
        b"caadmin", key, cert, None, serialization.BestAvailableEncryption(password))
    pem = os.path.join(os.path.dirname(ipa_ca.ADMIN_P12), "ca_admin.cert")
    copies = ((ipa_ca.ADMIN_P12, p12), (pem, cert.public_bytes(serialization.Encoding.PEM)))
    for path, data in copies:
        derived_keys.write_whole(path, data, 0o660)


def renew_admin(session: ipa_ca.Session, state: renewal.State, settings: ipa_ca.Settings,
                force: frozenset[str] = frozenset()) -> list[renewal.Decision]:
    """Dogtag's admin certificate, which this renewer itself authenticates with:
    renewed by serial while it is still valid, mapped to the admin user beside the
    old one, then saved over the PKCS#12."""
    now = datetime.datetime.now(datetime.timezone.utc)
    record = state.record(ADMIN_NAME)
    key, cert = ipa_ca.admin_identity(session.p12_password)
    not_after = derived_keys.validity(cert)[1]
    decision = renewal.decide(not_after, now, settings.renew_before, record)
    if ADMIN_NAME in force:
        decision = renewal.Decision("due", now, "renewal asked for")
    if decision.kind == "valid":
        record.succeeded(cert.serial_number, not_after, now, renewed=False)
    if decision.kind != "due":
        return [decision]
    try:
        renewed = session.dogtag.renew(cert.serial_number)
        system_certs.map_to_same_users(session.directory, session.config["ipaca_people"],
                                       cert, renewed)
        session.as_client(key, renewed).login()  # Dogtag takes it: only then replace
        save_admin(key, renewed, session.p12_password)
    except (ipa_ca.SetupError, ldap.LDAPError, OSError) as exc:
        record.failed(now, str(exc).splitlines()[0][:300])
        ipa_ca.log(f"renewing Dogtag's admin certificate failed ({decision.reason}): {exc}")
        return [renewal.decide(not_after, now, settings.renew_before, record)]
    new_not_after = derived_keys.validity(renewed)[1]
    record.succeeded(renewed.serial_number, new_not_after, now, renewed=True)
    ipa_ca.log(f"renewed Dogtag's admin certificate ({decision.reason}): serial "
        f"{renewed.serial_number}, valid until {new_not_after:%Y-%m-%d %H:%M:%S}Z")
    return [renewal.decide(new_not_after, now, settings.renew_before, record)]


def renew_system_certificates(session: ipa_ca.Session, state: renewal.State,
                              settings: ipa_ca.Settings,
                              force: frozenset[str] = frozenset(),
                              ) -> tuple[list[renewal.Decision], bool]:
    """Dogtag's own certificates: each one due is renewed through Dogtag and staged
    (system_certs.py); returns (when each is next looked at, whether Tomcat must
    restart to install what is staged)."""
    upcoming = []
    now = datetime.datetime.now(datetime.timezone.utc)
    certs = system_certs.of_config(session.config)
    staged = {cert.cert_id for cert in system_certs.pending(certs)}
    for cert in certs:
        record = state.record(cert.cert_id)
        if cert.cert_id in staged:
            continue  # renewed, waiting for Tomcat's restart to be installed
        try:
            held = system_certs.current(cert)
        except system_certs.SystemCertError as exc:
            record.failed(now, str(exc))
            continue
        not_after = derived_keys.validity(held)[1]
        decision = renewal.decide(not_after, now, settings.renew_before, record)
        if cert.cert_id in force:
            decision = renewal.Decision("due", now, "renewal asked for")
        if decision.kind == "valid":
            record.succeeded(held.serial_number, not_after, now, renewed=False)
        if decision.kind != "due":
            upcoming.append(decision)
            continue
        try:
            renewed = session.dogtag.renew(held.serial_number, cert.self_signed)
            if derived_keys.validity(renewed)[1] <= not_after:
                raise ipa_ca.SetupError(f"Dogtag renewed {cert.nickname} (serial "
                                        f"{renewed.serial_number}) only until {not_after:%Y-%m-%d}")
            system_certs.stage(cert, renewed)
        except (ipa_ca.SetupError, OSError) as exc:
            record.failed(now, str(exc).splitlines()[0][:300])
            ipa_ca.log(f"renewing {cert.nickname} failed ({decision.reason}): {exc}")
            upcoming.append(renewal.decide(not_after, now, settings.renew_before, record))
            continue
        staged.add(cert.cert_id)
        ipa_ca.log(f"renewed {cert.nickname} ({decision.reason}): serial {renewed.serial_number}, "
            f"valid until {derived_keys.validity(renewed)[1]:%Y-%m-%d %H:%M:%S}Z; "
            f"staged for Tomcat's restart")
    return upcoming, bool(staged)


MIN_SLEEP = 5.0
RENEWAL_LOCK = "/tmp/ipabuild-ca/renewal.lock"
RESTART_FLAG = "/tmp/ipabuild-ca/restart-tomcat"
RESTART_TIMEOUT = 300


def renewal_round(settings: ipa_ca.Settings, force: frozenset[str] = frozenset()) -> float:
    """One round of the renewer under its lock: IPA's certificates, then Dogtag's; a
    staged system certificate asks the entrypoint for a Tomcat restart. Returns the
    seconds until the next round is needed."""
    os.makedirs(os.path.dirname(RENEWAL_LOCK), exist_ok=True)
    with open(RENEWAL_LOCK, "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = renewal.State.load(ipa_ca.RENEWAL_STATE)
        try:
            with ipa_ca.Session(ipa_ca.load_config()) as session:
                upcoming = session.certify(state, settings, wait_served=False, force=force)
                upcoming += renew_admin(session, state, settings, force)
                more, restart = renew_system_certificates(session, state, settings, force)
            if restart:
                request_tomcat_restart()
            now = datetime.datetime.now(datetime.timezone.utc)
            return min([settings.check_every.total_seconds(),
                        *((d.at - now).total_seconds() for d in upcoming + more)])
        finally:
            state.save(ipa_ca.RENEWAL_STATE)
            ipa_ca.write_summary(state, settings)


def request_tomcat_restart() -> None:
    """Ask the entrypoint to install the staged certificates: it stops Tomcat (SIGTERM
    to the PID it recorded), runs ``install-staged`` and starts Tomcat again."""
    with open(RESTART_FLAG, "w", encoding="utf-8") as handle:
        handle.write("install staged system certificates\n")
    with open(ipa_ca.TOMCAT_PID, encoding="utf-8") as handle:
        pid = int(handle.read().strip())
    ipa_ca.log(f"restarting Tomcat (PID {pid}) to install renewed system certificates")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(ipa_ca.SETUP_MARKER)  # unhealthy until Tomcat is back and IPA's side set up
    os.kill(pid, signal.SIGTERM)


def renew_forever() -> None:
    """The renewer, for as long as the Tomcat it started beside runs: every
    IPABUILD_RENEW_CHECK (sooner when a certificate falls due or a retry is scheduled)
    renew what renewal.decide says is due. A failed round (CA or directory down) is
    logged and the next one tries again; it never stops the CA."""
    settings = ipa_ca.Settings.from_environment()
    with open(ipa_ca.TOMCAT_PID, encoding="utf-8") as handle:
        tomcat = int(handle.read().strip())
    ipa_ca.log(f"renewer: checks every {settings.check_every}, renews "
        f"{settings.renew_before} before expiry; state in {ipa_ca.RENEWAL_STATE}")
    while ipa_ca.tomcat_alive(tomcat):
        try:
            wake = renewal_round(settings)
        except (ipa_ca.SetupError, derived_keys.KeyError_, OSError, ldap.LDAPError) as exc:
            ipa_ca.log(f"renewer: this round failed ({exc}); trying again in {MIN_SLEEP * 12:.0f}s")
            wake = MIN_SLEEP * 12
        deadline = time.monotonic() + max(MIN_SLEEP, wake)
        while time.monotonic() < deadline and ipa_ca.tomcat_alive(tomcat):
            time.sleep(min(MIN_SLEEP, max(0.0, deadline - time.monotonic())))


def renew_now(names: list[str]) -> None:
    """One round now, renewing ``names`` whatever their dates (``ipabuild certs renew``)."""
    config = ipa_ca.load_config()
    known = [spec["name"] for spec in config["certificates"]] + [ADMIN_NAME] + \
        [cert.cert_id for cert in system_certs.of_config(config)]
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ipa_ca.SetupError(f"no certificate {', '.join(unknown)} here; "
                                f"known: {', '.join(known)}")
    renewal_round(ipa_ca.Settings.from_environment(), frozenset(names))
    staged = system_certs.pending(system_certs.of_config(config))
    if staged:  # Tomcat restarts to install them: done once they are and IPA's side is up
        ipa_ca.log(f"waiting for Tomcat to restart with {', '.join(c.cert_id for c in staged)}")
        deadline = time.monotonic() + RESTART_TIMEOUT
        while system_certs.pending(staged) or not os.path.exists(ipa_ca.SETUP_MARKER):
            if time.monotonic() > deadline:
                raise ipa_ca.SetupError(f"Tomcat did not come back with the renewed certificates "
                                 f"within {RESTART_TIMEOUT}s; the CA's log says why")
            time.sleep(1)
    state = renewal.State.load(ipa_ca.RENEWAL_STATE)
    failed = [f"{n}: {state.records[n].last_error}" for n in names
              if n in state.records and state.records[n].failures]
    if failed:
        raise ipa_ca.SetupError("renewal failed: " + "; ".join(failed))


def install_renewed() -> None:
    """With Tomcat stopped (the entrypoint runs this between two runs): install each
    staged system certificate (system_certs.install), recorded in the state."""
    config = ipa_ca.load_config()
    certs = system_certs.pending(system_certs.of_config(config))
    if not certs:
        return
    state = renewal.State.load(ipa_ca.RENEWAL_STATE)
    dm_password = os.path.join(derived_keys.SECRETS_DIR, "ldap-dm-password")
    with open(dm_password, encoding="utf-8") as handle:
        directory = ipa_ca.Directory(config["ldap_uri"], handle.read().strip())
    now = datetime.datetime.now(datetime.timezone.utc)
    try:
        for cert in certs:
            record = state.record(cert.cert_id)
            try:
                renewed = system_certs.install(cert, directory, config["suffix"],
                                               config["ipaca_people"])
            except (system_certs.SystemCertError, ldap.LDAPError, OSError) as exc:
                record.failed(now, f"install: {exc}"[:300])
                ipa_ca.log(f"installing the renewed {cert.nickname} failed: {exc}; the old one "
                    f"stays in use, the install is tried again at the next restart")
                continue
            record.succeeded(renewed.serial_number, derived_keys.validity(renewed)[1], now,
                             renewed=True)
            ipa_ca.log(f"installed the renewed {cert.nickname} (serial {renewed.serial_number})")
    finally:
        state.save(ipa_ca.RENEWAL_STATE)


COMMANDS = {"run": renew_forever, "install-staged": install_renewed}
USAGE = "usage: renewer.py run | now NAME... | install-staged"


def main(argv: list[str]) -> int:
    if argv[:1] == ["now"] and len(argv) > 1:
        command = lambda: renew_now(argv[1:])  # noqa: E731
    elif len(argv) == 1 and argv[0] in COMMANDS:
        command = COMMANDS[argv[0]]
    else:
        print(USAGE, file=sys.stderr)
        return 2
    try:
        command()
    except (ipa_ca.SetupError, derived_keys.KeyError_, OSError, ldap.LDAPError) as exc:
        print(f"renewer: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
