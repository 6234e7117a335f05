"""The CA's run (services/ca/ca_run.py) without Dogtag: what ipa_ca.py setup's exit
statuses lead to, the signing certificate's nickname from CS.cfg, and the loop around
Tomcat: a restart the renewer asked for installs the staged certificates and publishes
the CA certificate before Tomcat starts again; without one, the container ends with
Tomcat's status. The CA certificate is published once, and a missing entry says what
to do."""

from __future__ import annotations

import datetime
import sys
import threading
import types
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from service_modules import load

load("services/common/child_process.py")  # what ca_run imports beside it
load("services/ca/ca_init.py")
ca_run = load("services/ca/ca_run.py")


def test_the_signing_nickname_comes_from_cs_cfg_or_a_clear_error() -> None:
    cfg = ("ca.ocsp_signing.nickname=ocspSigningCert\n"
           "ca.signing.nickname=caSigningCert cert-pki-ca\n")
    assert ca_run.signing_nickname(cfg) == "caSigningCert cert-pki-ca"
    with pytest.raises(ca_run.RunError, match="init step again"):
        ca_run.signing_nickname("ca.ocsp_signing.nickname=x\n")


def test_setup_statuses_mean_healthy_restart_or_unhealthy() -> None:
    assert ca_run.setup_outcome(0) == (True, False, None)
    healthy, stop, said = ca_run.setup_outcome(3)  # Dogtag's engine did not start
    assert not healthy and stop and "restarted" in (said or "")
    assert ca_run.setup_outcome(4) == (False, False, None)  # Tomcat stopped meanwhile
    healthy, stop, said = ca_run.setup_outcome(1)
    assert not healthy and not stop and "unhealthy" in (said or "")


def test_where_comes_from_the_environment() -> None:
    place = ca_run.Place.from_environment({"IPA_SUFFIX": "dc=example,dc=test",
                                           "CA_LDAP_HOST": "ldap.example.test"})
    assert place.ldap_uri == "ldap://ldap.example.test:3389"
    assert place.ca_cert_dn == "cn=CAcert,cn=ipa,cn=etc,dc=example,dc=test"
    assert place.start_timeout == "180"


@pytest.fixture
def loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """ca_run's loop with a shell for Tomcat and its helpers recorded, not run."""
    done: dict[str, list[str]] = {"ran": [], "published": []}
    for name in ("RUN_DIR", "TOMCAT_PID", "SETUP_MARKER", "RESTART_FLAG", "CA_PEM"):
        monkeypatch.setattr(ca_run, name, tmp_path / getattr(ca_run, name).name)
    monkeypatch.setattr(ca_run.Tomcat, "handle_signals", lambda self: None)
    monkeypatch.setattr(ca_run, "ipa_side", lambda place, process, ended: None)
    monkeypatch.setattr(ca_run, "dm_password", lambda: "pw")
    monkeypatch.setattr(ca_run, "publish_ca_certificate",
                        lambda place, password: done["published"].append(password))

    class Ran:
        returncode = 0

    def run(argv: list[str], check: bool) -> Ran:
        done["ran"].append(" ".join(Path(arg).name for arg in argv[1:]))
        return Ran()

    monkeypatch.setattr(ca_run.subprocess, "run", run)
    return done


def test_a_restart_the_renewer_asked_for_installs_then_starts_tomcat_again(
        loop: dict[str, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flag = tmp_path / "restart-tomcat"
    # The first Tomcat asks for a restart (as the renewer does) and ends; the second
    # ends with status 3 by itself: a crash, which the container's status must show.
    monkeypatch.setattr(ca_run, "TOMCAT", ["sh", "-c", f"if [ -e {tmp_path}/second ]; "
                                           f"then exit 3; fi; touch {flag} {tmp_path}/second"])
    place = ca_run.Place.from_environment({"IPA_SUFFIX": "dc=example,dc=test"})
    assert ca_run.run(place) == 3
    assert loop["ran"] == ["renewer.py install-staged"]
    assert loop["published"] == ["pw"]  # the CA certificate again, before the restart
    assert not flag.exists()
    assert (tmp_path / "tomcat.pid").read_text().strip().isdigit()


def test_a_stop_of_the_container_ends_with_status_0_and_no_restart(
        loop: dict[str, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flag = tmp_path / "restart-tomcat"
    flag.write_text("asked\n")
    monkeypatch.setattr(ca_run, "TOMCAT", [sys.executable, "-c", "import time; time.sleep(30)"])
    place = ca_run.Place.from_environment({"IPA_SUFFIX": "dc=example,dc=test"})
    result: list[int] = []
    runner = threading.Thread(target=lambda: result.append(ca_run.run(place)))
    tomcats: list[object] = []
    real_start = ca_run.Tomcat.start

    def start(self: object) -> None:
        real_start(self)
        tomcats.append(self)

    monkeypatch.setattr(ca_run.Tomcat, "start", start)
    runner.start()
    while not tomcats:
        threading.Event().wait(0.05)
    tomcats[0].forward(15, None)  # type: ignore[attr-defined]  # SIGTERM, as podman stop
    runner.join(timeout=20)
    assert result == [0]
    assert not flag.exists()  # a stop cancels the restart the renewer had asked for
    assert loop["ran"] == []


class _FakeLdap(types.ModuleType):
    """python-ldap as publish_ca_certificate uses it; the modify raises ``answer``."""

    MOD_ADD, OPT_NETWORK_TIMEOUT = 0, 1

    class LDAPError(Exception):
        pass

    class TYPE_OR_VALUE_EXISTS(LDAPError):  # python-ldap's name
        pass

    class NO_SUCH_OBJECT(LDAPError):  # python-ldap's name
        pass

    def __init__(self, answer: type[Exception] | None) -> None:
        super().__init__("ldap")
        self.answer, self.added = answer, []

    def initialize(self, uri: str) -> object:
        fake = self

        class Connection:
            def set_option(self, option: int, value: object) -> None:
                pass

            def simple_bind_s(self, who: str, password: str) -> None:
                pass

            def modify_s(self, dn: str, mods: list[tuple[int, str, list[bytes]]]) -> None:
                if fake.answer is not None:
                    raise fake.answer()
                fake.added.append((dn, mods[0][1]))

            def unbind_s(self) -> None:
                raise fake.LDAPError("never connected")  # must not hide the outcome

        return Connection()


def test_the_ca_certificate_is_published_once_and_a_missing_entry_says_what_to_do(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Certificate Authority")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    der = cert.public_bytes(serialization.Encoding.DER)
    for attr in ("RUN_DIR", "CA_PEM"):
        monkeypatch.setattr(ca_run, attr, tmp_path / getattr(ca_run, attr).name)
    monkeypatch.setattr(ca_run, "signing_certificate", lambda place: der)
    place = ca_run.Place.from_environment({"IPA_SUFFIX": "dc=example,dc=test"})
    fake = _FakeLdap(None)
    monkeypatch.setitem(sys.modules, "ldap", fake)
    ca_run.publish_ca_certificate(place, "pw")
    assert fake.added == [("cn=CAcert,cn=ipa,cn=etc,dc=example,dc=test", "cACertificate;binary")]
    assert x509.load_pem_x509_certificate((tmp_path / "ca.pem").read_bytes()) == cert
    monkeypatch.setitem(sys.modules, "ldap", _FakeLdap(_FakeLdap.TYPE_OR_VALUE_EXISTS))
    ca_run.publish_ca_certificate(place, "pw")  # already there: nothing to do
    monkeypatch.setitem(sys.modules, "ldap", _FakeLdap(_FakeLdap.NO_SUCH_OBJECT))
    with pytest.raises(ca_run.RunError, match="newer ldap image"):
        ca_run.publish_ca_certificate(place, "pw")


def test_a_run_stops_only_its_own_tomcat_and_a_signal_death_reads_as_the_shell_says() -> None:
    """IPA's side of an earlier run must not stop the Tomcat a restart started since."""
    process = ca_run.subprocess.Popen(["sleep", "30"])
    ended = threading.Event()
    ended.set()  # its run is over: a later Tomcat may be running
    ca_run.stop_run(process, ended)
    assert process.poll() is None
    ca_run.stop_run(process, threading.Event())
    assert process.wait(timeout=10) == -15
    assert ca_run.exit_status(-9) == 137 and ca_run.exit_status(3) == 3
