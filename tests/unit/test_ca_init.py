"""The CA's init step's own logic (services/ca/ca_init.py), without pkispawn: the
configuration it renders with the secrets, and what it removes of an interrupted init."""

from __future__ import annotations

import shutil
import sys
import types
from pathlib import Path

import pytest
from service_modules import ROOT, load

ca_init = load("services/ca/ca_init.py")
TEMPLATE = (ROOT / "services/ca/pkispawn.cfg.j2").read_text()


def _values() -> dict[str, str]:
    return {"CA_HOSTNAME": "ca", "LDAP_HOST": "ldap", "LDAP_PORT": "3389",
            "BASE_DN": "o=ipaca", "DM_PASSWORD": "dm%pw&|\\x", "ADMIN_PASSWORD": "a",
            "PKCS12_PASSWORD": "p", "PKI_USER": "1000660000", "DS_REMOVE_DATA": "False"}


def test_every_slot_of_the_real_template_is_filled_and_percent_escaped() -> None:
    rendered = ca_init.render_cfg(TEMPLATE, _values())
    assert "pki_ds_password=dm%%pw&|\\x" in rendered  # configparser's '%' doubled, no more
    assert "pki_ds_hostname=ldap" in rendered and "pki_hostname=ca" in rendered
    # The instance belongs to the running user and group 0: no chown to anyone else.
    assert "pki_user=1000660000" in rendered and "pki_group=root" in rendered
    assert "pki_ds_remove_data=False" in rendered  # nothing of an earlier init to remove
    assert not any(ca_init.SLOT.search(line) for line in rendered.splitlines()
                   if not line.startswith("#"))


def test_a_missing_value_or_a_line_break_is_refused() -> None:
    values = _values()
    del values["PKCS12_PASSWORD"]
    with pytest.raises(ca_init.InitError, match="PKCS12_PASSWORD"):
        ca_init.render_cfg(TEMPLATE, values)
    with pytest.raises(ca_init.InitError, match="line break"):
        ca_init.render_cfg(TEMPLATE, {**_values(), "ADMIN_PASSWORD": "a\nb"})


def test_an_interrupted_init_is_removed_and_a_clean_volume_left_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def under(path: str) -> str:
        return str(tmp_path / path.lstrip("/"))
    monkeypatch.setattr(ca_init, "STARTED_SIGNS", tuple(map(under, ca_init.STARTED_SIGNS)))
    monkeypatch.setattr(ca_init, "LEFTOVERS", tuple(map(under, ca_init.LEFTOVERS)))
    shipped = tmp_path / "etc/pki/pki.conf"
    shipped.parent.mkdir(parents=True)
    shipped.write_text("kept")
    ca_init.remove_interrupted_init()  # nothing started: nothing removed
    assert shipped.exists()
    (tmp_path / "var/lib/pki/pki-tomcat/ca").mkdir(parents=True)
    (tmp_path / "etc/pki/pki-tomcat.sysconfig").write_text("x")
    (tmp_path / "etc/pki/ipabuild-client").mkdir()
    ca_init.remove_interrupted_init()
    assert not any(Path(p).exists() for p in ca_init.LEFTOVERS)
    assert shipped.read_text() == "kept"


class _FakeLdap(types.ModuleType):
    """python-ldap as wait_master_key uses it: each connection answers with the next of
    ``answers`` (an exception class to raise, or the search result)."""

    SCOPE_BASE, SCOPE_ONELEVEL = 0, 1

    class LDAPError(Exception):
        pass

    class NO_SUCH_OBJECT(LDAPError):  # python-ldap's name
        pass

    class INVALID_CREDENTIALS(LDAPError):  # python-ldap's name
        pass

    class SERVER_DOWN(LDAPError):  # python-ldap's name
        pass

    def __init__(self, answers: list[object]) -> None:
        super().__init__("ldap")
        self.answers = answers
        self.searched: list[tuple[str, str]] = []

    def initialize(self, uri: str) -> object:
        fake = self

        class Connection:
            def simple_bind_s(self, who: str, password: str) -> None:
                answer = fake.answers[0]
                if answer is fake.INVALID_CREDENTIALS:
                    raise fake.INVALID_CREDENTIALS()

            def search_s(self, base: str, scope: int, filterstr: str, attrs: list[str]) -> object:
                fake.searched.append((base, filterstr))
                answer = fake.answers.pop(0)
                if isinstance(answer, type):
                    raise answer()
                return answer

            def unbind_s(self) -> None:
                pass

        return Connection()


def test_the_init_waits_until_the_realm_entry_holds_its_master_key(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _FakeLdap([_FakeLdap.SERVER_DOWN, _FakeLdap.NO_SUCH_OBJECT, [],
                      [("cn=EXAMPLE.TEST,cn=kerberos,dc=example,dc=test", {})]])
    monkeypatch.setitem(sys.modules, "ldap", fake)
    monkeypatch.setattr(ca_init.time, "sleep", lambda seconds: None)
    ca_init.wait_master_key("ldap://ldap:3389", "pw", "EXAMPLE.TEST", "dc=example,dc=test")
    assert fake.answers == []  # asked until the key was there, and no longer
    assert fake.searched[-1] == ("cn=EXAMPLE.TEST,cn=kerberos,dc=example,dc=test",
                                 "(krbMKey=*)")


def test_a_wrong_directory_manager_secret_is_a_clear_error_not_a_wait(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ldap", _FakeLdap([_FakeLdap.INVALID_CREDENTIALS]))
    with pytest.raises(ca_init.InitError, match="ldap-dm-password"):
        ca_init.wait_master_key("ldap://ldap:3389", "pw", "EXAMPLE.TEST", "dc=example,dc=test")


def test_pkispawn_removes_a_database_only_when_an_earlier_init_left_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A new stack has no o=ipaca backend: pkispawn's JVM removal step is skipped."""
    escape = types.ModuleType("ldap.filter")
    escape.escape_filter_chars = lambda value: value.replace("*", "\\2a")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ldap.filter", escape)
    fake = _FakeLdap([[], []])
    fake.filter = escape  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ldap", fake)
    assert not ca_init.database_exists("ldap://ldap:3389", "pw", "o=ipaca")
    assert fake.searched == [("cn=ldbm database,cn=plugins,cn=config", "(nsslapd-suffix=o=ipaca)"),
                             ("cn=mapping tree,cn=config", "(cn=o=ipaca)")]
    # The directory restarting (a refused connection) is tried again, not a traceback.
    monkeypatch.setattr(ca_init.time, "sleep", lambda seconds: None)
    fake = _FakeLdap([_FakeLdap.SERVER_DOWN, [], []])
    fake.filter = escape  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ldap", fake)
    assert not ca_init.database_exists("ldap://ldap:3389", "pw", "o=ipaca")
    assert fake.answers == []
    backend = [("cn=ipaca,cn=ldbm database,cn=plugins,cn=config", {})]
    for answers in ([backend, []], [[], [("cn=o\\3Dipaca,cn=mapping tree,cn=config", {})]]):
        monkeypatch.setitem(sys.modules, "ldap", _FakeLdap(answers))
        sys.modules["ldap"].filter = escape  # type: ignore[attr-defined]
        assert ca_init.database_exists("ldap://ldap:3389", "pw", "o=ipaca")


def test_init_refuses_root_and_a_group_other_than_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    """The instance would belong to root (or to a group the CA does not run as later)."""
    monkeypatch.setattr(ca_init.os, "geteuid", lambda: 0)
    monkeypatch.setattr(ca_init.os, "getegid", lambda: 0)
    with pytest.raises(ca_init.InitError, match="non-root UID with GID 0"):
        ca_init.init()
    monkeypatch.setattr(ca_init.os, "geteuid", lambda: 1000660000)
    monkeypatch.setattr(ca_init.os, "getegid", lambda: 1000660000)
    with pytest.raises(ca_init.InitError, match="GID 1000660000"):
        ca_init.init()


def test_an_interrupted_init_with_an_unreachable_folder_is_removed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """pkispawn stopped between its chmods leaves alias/ 0600: its owner can list it but
    not remove what is inside; without root, removal makes it reachable first. Run as a
    non-root user (root ignores the folder's mode, so would prove nothing), in a folder
    of /tmp that user can reach (pytest's own are root's, 0700)."""
    import os
    import tempfile

    tmp_path = Path(tempfile.mkdtemp(prefix="ipabuild-ca-init-"))
    monkeypatch.chdir("/")

    def under(path: str) -> str:
        return str(tmp_path / path.lstrip("/"))
    monkeypatch.setattr(ca_init, "STARTED_SIGNS", tuple(map(under, ca_init.STARTED_SIGNS)))
    monkeypatch.setattr(ca_init, "LEFTOVERS", tuple(map(under, ca_init.LEFTOVERS)))
    alias = tmp_path / "etc/pki/pki-tomcat/alias"
    alias.mkdir(parents=True)
    (alias / "key4.db").write_text("k")
    alias.chmod(0o600)
    nobody = 65534
    if os.geteuid() == 0:
        for path in [tmp_path, *tmp_path.rglob("*")]:
            os.chown(path, nobody, nobody)
    child = os.fork()
    if child == 0:  # the removal, as a user whose rights the folder's mode limits
        code = 1
        try:
            if os.geteuid() == 0:
                os.setgid(nobody)
                os.setuid(nobody)
            ca_init.remove_interrupted_init()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    try:
        assert os.waitstatus_to_exitcode(status) == 0
        assert not (tmp_path / "etc/pki/pki-tomcat").exists()
    finally:
        if alias.exists():
            alias.chmod(0o700)
        shutil.rmtree(tmp_path)
