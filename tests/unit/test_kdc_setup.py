"""The kdc's realm setup (services/kdc/kdc_setup.py), without a directory: the aliases
each service principal gets, which ldapmodify results a re-run may meet, how kadmin's
answers are read, and that a missing secret or setting is one clear line."""

from __future__ import annotations

import socket
import subprocess
import threading
from pathlib import Path

import pytest
from service_modules import ROOT, load

kdc_setup = load("services/kdc/kdc_setup.py")
REALM = kdc_setup.Realm("EXAMPLE.TEST", "dc=example,dc=test", "ipa.example.test")


def _principals() -> list[tuple[str, str]]:
    text = (ROOT / "services/kdc/principals.j2").read_text()
    rendered = text.replace("{{ domain }}", "example.test").replace("{{ realm }}",
                                                                      "EXAMPLE.TEST")
    return kdc_setup.service_principals(rendered)


def test_the_principals_file_lists_each_service_with_its_secret() -> None:
    assert _principals() == [("HTTP/http.example.test@EXAMPLE.TEST", "http-service-password"),
                             ("ldap/ldap.example.test@EXAMPLE.TEST", "ldap-service-password")]


def test_search_domains_come_from_search_and_domain_lines_once_each() -> None:
    resolv = ("# podman\nsearch dns.podman example.test\nnameserver 10.89.0.1\n"
              "domain example.test\noptions timeout:1\n")
    assert kdc_setup.search_domains(resolv) == ["dns.podman", "example.test"]
    assert kdc_setup.search_domains("nameserver 1.1.1.1\n") == []


def test_each_principal_gets_its_short_search_domain_and_server_names() -> None:
    changes, aliases = kdc_setup.aliases_ldif(_principals()[1:], REALM, ["dns.podman"])
    assert aliases == ["ldap/ldap@EXAMPLE.TEST", "ldap/ldap.dns.podman@EXAMPLE.TEST",
                       "ldap/ipa.example.test@EXAMPLE.TEST", "ldap/ipa@EXAMPLE.TEST",
                       "ldap/ipa.dns.podman@EXAMPLE.TEST"]
    first = changes.split("\n\n")[0]
    assert first == ("dn: krbprincipalname=ldap/ldap.example.test@EXAMPLE.TEST,cn=services,"
                     "cn=accounts,dc=example,dc=test\nchangetype: modify\n"
                     "add: krbPrincipalName\nkrbPrincipalName: ldap/ldap@EXAMPLE.TEST")
    assert changes.count("changetype: modify") == 5


def test_no_alias_repeats_the_principal_or_another_alias() -> None:
    """In a pod whose search domain is the stack's own domain, "ldap.example.test" is the
    principal's own name and must not be added to it again."""
    names = kdc_setup.alias_names("ldap.example.test", "ipa.example.test",
                                  ["example.test", "svc.cluster.local"])
    assert "ldap.example.test" not in names and len(names) == len(set(names))
    assert names == ["ldap", "ldap.svc.cluster.local", "ipa.example.test", "ipa",
                     "ipa.svc.cluster.local"]


def test_only_results_a_rerun_cannot_meet_are_errors() -> None:
    output = ("adding new entry \"fqdn=ldap.example.test,...\"\n"
              "ldap_add: Already exists (68)\n"
              "modifying entry \"cn=...\"\nldap_modify: Type or value exists (20)\n"
              "\tadditional info: krbPrincipalName already exists\n"
              "ldap_modify: Insufficient access (50)\n")
    tolerated = (kdc_setup.ALREADY_EXISTS, kdc_setup.VALUE_EXISTS)
    assert kdc_setup.ldap_errors(output, tolerated) == ["ldap_modify: Insufficient access (50)"]
    assert kdc_setup.ldap_errors(output, (20,)) == ["ldap_add: Already exists (68)",
                                                    "ldap_modify: Insufficient access (50)"]


@pytest.mark.parametrize(("returncode", "output", "fails"), [
    (0, "modifying entry \"x\"\n", False),
    (20, "ldap_modify: Type or value exists (20)\n", False),
    (50, "ldap_modify: Insufficient access (50)\n", True),
    (1, "ldapmodify: invalid format (line 3) entry: \"x\"\n", True),  # no ldap_ line
])
def test_a_modify_fails_on_what_is_not_tolerated(
        monkeypatch: pytest.MonkeyPatch, returncode: int, output: str, fails: bool) -> None:
    def fake_run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        assert argv[:2] == ["ldapmodify", "-c"] and "EXTERNAL" in argv
        return subprocess.CompletedProcess(argv, returncode, "", output)
    monkeypatch.setattr(kdc_setup.subprocess, "run", fake_run)
    directory = kdc_setup.Ldapi("ldapi://%2Frun%2Fx.socket")
    if fails:
        with pytest.raises(kdc_setup.SetupError, match="could not add the aliases: "):
            directory.modify("dn: x\n", "add the aliases", (20,))
    else:
        directory.modify("dn: x\n", "add the aliases", (20,))


def test_kadmins_answers_say_whether_a_principal_and_its_keys_exist() -> None:
    assert kdc_setup.key_count('get_principal: Principal does not exist while retrieving '
                               '"x@EXAMPLE.TEST".\n') is None
    assert kdc_setup.key_count("Principal: ldap/ldap.example.test@EXAMPLE.TEST\n"
                               "Number of keys: 0\nMKey: vno 1\n") == 0
    assert kdc_setup.key_count("Principal: HTTP/http.example.test@EXAMPLE.TEST\n"
                               "Number of keys: 4\n") == 4


def test_the_ldapi_uri_escapes_the_socket_path() -> None:
    assert REALM.socket == Path("/run/ipa-ldapi/slapd-EXAMPLE-TEST.socket")
    assert kdc_setup.ldapi_uri(REALM.socket) == (
        "ldapi://%2Frun%2Fipa-ldapi%2Fslapd-EXAMPLE-TEST.socket")


def test_a_missing_secret_or_setting_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "kdc-master-key").write_text("s3cret\n")
    assert kdc_setup.secret("kdc-master-key", tmp_path) == "s3cret"
    (tmp_path / "empty").write_text("\n")
    for name in ("admin-password", "empty"):
        with pytest.raises(kdc_setup.SetupError, match=f"secret '{name}' missing: mount it"):
            kdc_setup.secret(name, tmp_path)
    with pytest.raises(kdc_setup.SetupError, match="IPA_SUFFIX, IPA_SERVER not set"):
        kdc_setup.Realm.from_environ({"IPA_REALM": "EXAMPLE.TEST"})


def test_the_wait_for_the_directory_port_ends_when_it_listens() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]
        timer = threading.Timer(0.6, server.listen)
        timer.start()
        kdc_setup.wait_tcp("127.0.0.1", port, "a test", timeout=10)
        timer.join()
    with pytest.raises(kdc_setup.SetupError, match=r"gave up after \d+s waiting for"):
        kdc_setup.wait_tcp("127.0.0.1", port, "a test", timeout=0.5)


@pytest.mark.parametrize(("returncode", "stdout", "answer"), [
    (0, "dn: cn=EXAMPLE.TEST,cn=kerberos,dc=example,dc=test\n", True),
    (0, "", False),  # the entry is there, the filter does not match (no krbMKey yet)
    (kdc_setup.NO_SUCH_OBJECT, "", False),
    (255, "", None),  # cannot contact the server: an error, never "absent"
    (50, "", None),
])
def test_a_failed_search_is_an_error_not_absent(
        monkeypatch: pytest.MonkeyPatch, returncode: int, stdout: str,
        answer: bool | None) -> None:
    """A realm is created, or admin's password set, only when the directory said
    "not there": a search that failed must not recreate the realm over the old one."""
    def fake_run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(argv, returncode, stdout, "ldap_sasl_bind: x")
    monkeypatch.setattr(kdc_setup.subprocess, "run", fake_run)
    directory = kdc_setup.Ldapi("ldapi://%2Frun%2Fx.socket")
    if answer is None:
        with pytest.raises(kdc_setup.SetupError, match=r"could not search .* over LDAPI"):
            directory.has(REALM.container_dn, "(krbMKey=*)", "dn")
        assert directory.answers(REALM.container_dn) is False  # the wait just waits on
    else:
        assert directory.has(REALM.container_dn, "(krbMKey=*)", "dn") is answer


def test_settings_that_cannot_be_read_are_one_clear_line() -> None:
    assert kdc_setup.endpoint("ldap:3389") == ("ldap", 3389)
    assert kdc_setup.wait_timeout("") == 0 and kdc_setup.wait_timeout("30") == 30
    for bad in ("ldap", "ldap:", ":3389", "ldap:x"):
        with pytest.raises(kdc_setup.SetupError, match="is not HOST:PORT"):
            kdc_setup.endpoint(bad)
    with pytest.raises(kdc_setup.SetupError, match="is not a number of seconds"):
        kdc_setup.wait_timeout("soon")
