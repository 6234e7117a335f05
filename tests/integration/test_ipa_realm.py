"""The split stack's realm is FreeIPA's: IPA's directory tree and object classes, keys made
by ipa-pwd-extop from passwords, ipa-kdb serving them (kinit, kpasswd, the realm's lockout
policy), proven with stock clients from a separate container."""

from __future__ import annotations

import uuid

import pytest

from tests.integration.stack_client import KINIT_ADMIN, Client, admin_env


@pytest.fixture
def client(ipa_client: Client) -> Client:
    """Each mode in turn (conftest's ``ipa_client``): the monolith runs the same realm."""
    return ipa_client

SUFFIX = "dc=example,dc=test"
LDAP = "ldap://ldap.example.test:3389"
ADMIN_LDAP = f"{KINIT_ADMIN} && "  # then GSSAPI as admin (IPA's ACIs: admins manage all)


def _user_ldif(uid: str) -> str:
    """A user entry as `ipa user-add` writes it; DNA assigns the IDs (magic -1) and the
    Managed Entries plugin the user private group."""
    return (f"dn: uid={uid},cn=users,cn=accounts,{SUFFIX}\n"
            "objectClass: top\nobjectClass: person\nobjectClass: organizationalperson\n"
            "objectClass: inetorgperson\nobjectClass: inetuser\nobjectClass: posixaccount\n"
            "objectClass: krbprincipalaux\nobjectClass: krbticketpolicyaux\n"
            "objectClass: ipaobject\nobjectClass: ipasshuser\n"
            f"uid: {uid}\ncn: Test {uid}\nsn: {uid}\ngivenName: Test\n"
            f"krbPrincipalName: {uid}@EXAMPLE.TEST\nkrbCanonicalName: {uid}@EXAMPLE.TEST\n"
            f"homeDirectory: /home/{uid}\nuidNumber: -1\ngidNumber: -1\n"
            "ipaUniqueID: autogenerate\n")


def _add_user(client: Client, uid: str, password: str) -> None:
    """Add ``uid`` over LDAP as admin (GSSAPI), then give it ``password`` with the LDAP
    password modify operation: ipa-pwd-extop makes its Kerberos keys and, as for every
    password an administrator sets in IPA, marks it expired."""
    result = client.run(
        ADMIN_LDAP + 'printf "%s" "$LDIF" | ldapadd -N -Q -Y GSSAPI -H "$LDAP" >/dev/null && '
        f'ldappasswd -N -Q -Y GSSAPI -H "$LDAP" -T <(printf %s "$NEW") '
        f'"uid=$U,cn=users,cn=accounts,{SUFFIX}"',
        env={**admin_env(client), "LDIF": _user_ldif(uid), "LDAP": LDAP, "U": uid,
             "NEW": password})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def _first_kinit(client: Client, uid: str, temporary: str, chosen: str) -> str:
    """The user's first kinit: the expired password is changed (kpasswd protocol)."""
    code, out = _kinit(client, uid, f"{temporary}\\n{chosen}\\n{chosen}\\n")
    assert code == 0, out
    assert "expired" in out.lower(), out
    return out


def _kinit(client: Client, principal: str, answers: str) -> tuple[int, str]:
    result = client.run('printf "$ANSWERS" | kinit "$P" && klist',
                        env={"ANSWERS": answers, "P": principal})
    return result.returncode, result.stdout + result.stderr


def test_admin_is_an_ipa_user_in_ipas_tree(client: Client) -> None:
    result = client.run(
        ADMIN_LDAP + f'ldapwhoami -Q -N -Y GSSAPI -H "$LDAP" && ldapsearch -LLL -N -Q -Y GSSAPI '
        f'-H "$LDAP" -b "uid=admin,cn=users,cn=accounts,{SUFFIX}" objectClass memberOf && '
        f'ldapsearch -LLL -Q -N -Y GSSAPI -H "$LDAP" -b "cn=etc,{SUFFIX}" -s one dn',
        env={**admin_env(client), "LDAP": LDAP})
    assert result.returncode == 0, result.stderr
    out = result.stdout.replace("\n ", "")
    assert f"dn: uid=admin,cn=users,cn=accounts,{SUFFIX}" in out
    for object_class in ("ipaobject", "krbprincipalaux", "posixaccount", "ipasshuser"):
        assert f"objectClass: {object_class}" in out, object_class
    assert f"memberOf: cn=admins,cn=groups,cn=accounts,{SUFFIX}" in out  # memberOf plugin
    for container in ("ipaconfig", "ipa", "s4u2proxy", "sysaccounts"):  # FreeIPA templates
        assert f"cn={container}," in out.lower(), container


def test_realm_holds_the_stacks_services_and_delegation(client: Client) -> None:
    result = client.run(
        ADMIN_LDAP + f'ldapsearch -LLL -Q -N -Y GSSAPI -H "$LDAP" -b "{SUFFIX}" '
        '"(|(krbPrincipalName=HTTP/*)(krbPrincipalName=ldap/*)'
        '(krbPrincipalName=WELLKNOWN/ANONYMOUS*)(cn=ipa-http-delegation))" '
        "krbPrincipalName memberPrincipal objectClass",
        env={**admin_env(client), "LDAP": LDAP})
    assert result.returncode == 0, result.stderr
    out = result.stdout.replace("\n ", "")
    assert (f"dn: krbprincipalname=HTTP/http.example.test@EXAMPLE.TEST,cn=services,"
            f"cn=accounts,{SUFFIX}") in out
    assert "objectClass: ipaservice" in out
    assert "krbPrincipalName: WELLKNOWN/ANONYMOUS@EXAMPLE.TEST" in out
    assert "memberPrincipal: HTTP/http.example.test@EXAMPLE.TEST" in out  # S4U2Proxy rule


def test_password_set_over_ldap_makes_keys_and_kinit_works(client: Client) -> None:
    uid = f"u{uuid.uuid4().hex[:8]}"
    _add_user(client, uid, "Temp.123-expired")
    out = _first_kinit(client, uid, "Temp.123-expired", "First.456-chosen")
    assert f"Default principal: {uid}@EXAMPLE.TEST" in out
    code, out = _kinit(client, uid, "First.456-chosen\\n")
    assert code == 0, out
    code, out = _kinit(client, uid, "not-the-password\\n")
    assert code != 0 and "Password incorrect" in out, out


def test_kpasswd_changes_the_password(client: Client) -> None:
    # IPA's default policy keeps a new password for an hour (krbMinPwdLife); what
    # `ipa pwpolicy-mod --minlife=0` changes, changed here over LDAP as admin.
    policy = (f"dn: cn=global_policy,cn=EXAMPLE.TEST,cn=kerberos,{SUFFIX}\\n"
              "changetype: modify\\nreplace: krbMinPwdLife\\nkrbMinPwdLife: 0\\n")
    result = client.run(ADMIN_LDAP + 'printf "$POLICY" | ldapmodify -N -Q -Y GSSAPI -H "$LDAP"',
                        env={**admin_env(client), "LDAP": LDAP, "POLICY": policy})
    assert result.returncode == 0, result.stderr
    uid = f"u{uuid.uuid4().hex[:8]}"
    _add_user(client, uid, "Temp.123-expired")
    _first_kinit(client, uid, "Temp.123-expired", "First.456-chosen")
    result = client.run('printf "$ANSWERS" | kpasswd "$P"',
                        env={"ANSWERS": "First.456-chosen\\nSecond.789-chosen\\n"
                                        "Second.789-chosen\\n", "P": uid})
    assert result.returncode == 0, result.stdout + result.stderr
    assert _kinit(client, uid, "Second.789-chosen\\n")[0] == 0
    assert _kinit(client, uid, "First.456-chosen\\n")[0] != 0, "the old password still works"


def test_repeated_wrong_passwords_lock_the_principal(client: Client) -> None:
    uid = f"u{uuid.uuid4().hex[:8]}"
    _add_user(client, uid, "Temp.123-expired")
    _first_kinit(client, uid, "Temp.123-expired", "Right.123-password")
    policy = client.run(
        ADMIN_LDAP + f'ldapsearch -LLL -N -Q -Y GSSAPI -H "$LDAP" -b '
        f'"cn=global_policy,cn=EXAMPLE.TEST,cn=kerberos,{SUFFIX}" krbPwdMaxFailure',
        env={**admin_env(client), "LDAP": LDAP})
    limit = int(next(line.split(": ")[1] for line in policy.stdout.splitlines()
                     if line.startswith("krbPwdMaxFailure")))
    for _ in range(limit):
        assert _kinit(client, uid, "Wrong.000-password\\n")[0] != 0
    code, out = _kinit(client, uid, "Right.123-password\\n")
    assert code != 0, "the right password still works after the realm's lockout limit"
    assert "revoked" in out.lower() or "locked" in out.lower(), out


def test_service_principals_answer_to_the_names_clients_canonicalise_to(
        client: Client) -> None:
    """A client that reaches ldap or http by its short name, or by the name under its
    resolver's search domain (dns.podman here, <namespace>.svc.cluster.local in a pod),
    asks for ldap/<that name>: the principal aliases the kdc adds make ipa-kdb answer, and
    ns-slapd and httpd accept those tickets (ldap/'s own keys, any of its names)."""
    script = (
        ADMIN_LDAP + 'domain=$(awk \'$1 == "search" { print $2; exit }\' /etc/resolv.conf) && '
        'test -n "$domain" && kvno ldap/ldap HTTP/http "HTTP/http.$domain" && '
        'ldapwhoami -N -Q -Y GSSAPI -H ldap://ldap:3389 && '
        'ldapwhoami -N -Q -Y GSSAPI -H "ldap://ldap.$domain:3389" && '
        # httpd accepts the alias' ticket; the API then checks the Referer's host itself
        'curl -sS -k --negotiate -u : -o /dev/null -w "http:%{http_code}\\n" '
        '-H "Referer: https://ipa.example.test/ipa" '
        '"https://http.$domain/ipa/session/login_kerberos" && klist')
    result = client.run(script, env=admin_env(client))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    out = result.stdout
    assert out.count(f"dn: uid=admin,cn=users,cn=accounts,{SUFFIX}") == 2, out
    assert "http:200" in out, out
    for principal in ("ldap/ldap@EXAMPLE.TEST", "HTTP/http@EXAMPLE.TEST"):
        assert principal in out, principal
    assert ".dns.podman@EXAMPLE.TEST" in out or ".svc." in out, out
    # and the directory records them as aliases of the one canonical entry
    search = client.run(
        ADMIN_LDAP + f'ldapsearch -LLL -N -Q -Y GSSAPI -H "$LDAP" -b "cn=services,cn=accounts,'
        f'{SUFFIX}" "(krbPrincipalName=ldap/ldap@EXAMPLE.TEST)" krbCanonicalName',
        env={**admin_env(client), "LDAP": LDAP})
    assert "krbCanonicalName: ldap/ldap.example.test@EXAMPLE.TEST" in search.stdout, search.stdout
