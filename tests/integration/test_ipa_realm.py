"""The split stack's realm is FreeIPA's: IPA's directory tree and object classes, keys made
by ipa-pwd-extop from passwords, ipa-kdb serving them (kinit, kpasswd, the realm's lockout
policy), proven with stock clients from a separate container."""

from __future__ import annotations

import uuid

from tests.integration.stack_client import KINIT_ADMIN, Client, admin_env

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


def _add_user(client: Client, uid: str, password: str, by_directory_manager: bool) -> None:
    """Add ``uid`` over LDAP as admin, then set its password with the LDAP password
    modify operation: by Directory Manager (a final password) or by admin (an expired one,
    as IPA makes every password an administrator sets)."""
    setter = ('ldappasswd -x -H "$LDAP" -D "cn=Directory Manager" -y <(printf %s "$DM")'
              if by_directory_manager else 'ldappasswd -Y GSSAPI -H "$LDAP"')
    result = client.run(
        ADMIN_LDAP + 'printf "%s" "$LDIF" | ldapadd -Q -Y GSSAPI -H "$LDAP" >/dev/null && '
        f'{setter} -T <(printf %s "$NEW") "uid=$U,cn=users,cn=accounts,{SUFFIX}"',
        env={**admin_env(client), "LDIF": _user_ldif(uid), "LDAP": LDAP, "U": uid,
             "NEW": password, "DM": client.secret("ldap-dm-password")})
    assert result.returncode == 0, result.stderr[-2000:]


def _kinit(client: Client, principal: str, answers: str) -> tuple[int, str]:
    result = client.run('printf "$ANSWERS" | kinit "$P" && klist',
                        env={"ANSWERS": answers, "P": principal})
    return result.returncode, result.stdout + result.stderr


def test_admin_is_an_ipa_user_in_ipas_tree(client: Client) -> None:
    result = client.run(
        ADMIN_LDAP + f'ldapwhoami -Q -Y GSSAPI -H "$LDAP" && ldapsearch -LLL -Q -Y GSSAPI '
        f'-H "$LDAP" -b "uid=admin,cn=users,cn=accounts,{SUFFIX}" objectClass memberOf && '
        f'ldapsearch -LLL -Q -Y GSSAPI -H "$LDAP" -b "cn=etc,{SUFFIX}" -s one dn',
        env={**admin_env(client), "LDAP": LDAP})
    assert result.returncode == 0, result.stderr
    out = result.stdout.replace("\n ", "")
    assert f"dn: uid=admin,cn=users,cn=accounts,{SUFFIX}" in out
    for object_class in ("ipaobject", "krbprincipalaux", "posixaccount", "ipasshuser"):
        assert f"objectClass: {object_class}" in out, object_class
    assert f"memberOf: cn=admins,cn=groups,cn=accounts,{SUFFIX}" in out  # memberOf plugin
    for container in ("ipaconfig", "masters", "s4u2proxy"):  # FreeIPA's own templates
        assert f"cn={container}," in out, container


def test_realm_holds_the_stacks_services_and_delegation(client: Client) -> None:
    result = client.run(
        ADMIN_LDAP + f'ldapsearch -LLL -Q -Y GSSAPI -H "$LDAP" -b "{SUFFIX}" '
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
    _add_user(client, uid, "Secret.123-final", by_directory_manager=True)
    code, out = _kinit(client, uid, "Secret.123-final\\n")
    assert code == 0, out
    assert f"Default principal: {uid}@EXAMPLE.TEST" in out
    code, out = _kinit(client, uid, "not-the-password\\n")
    assert code != 0 and "Password incorrect" in out, out


def test_expired_password_is_changed_at_first_kinit_then_kpasswd(client: Client) -> None:
    uid = f"u{uuid.uuid4().hex[:8]}"
    _add_user(client, uid, "Temp.123-expired", by_directory_manager=False)
    # admin set it: IPA marks it expired, so kinit asks for a new one (kpasswd protocol).
    code, out = _kinit(client, uid, "Temp.123-expired\\nFirst.456-chosen\\nFirst.456-chosen\\n")
    assert code == 0, out
    assert "expired" in out.lower()
    result = client.run('printf "$ANSWERS" | kpasswd "$P"',
                        env={"ANSWERS": "First.456-chosen\\nSecond.789-chosen\\n"
                                        "Second.789-chosen\\n", "P": uid})
    assert result.returncode == 0, result.stdout + result.stderr
    assert _kinit(client, uid, "Second.789-chosen\\n")[0] == 0
    code, out = _kinit(client, uid, "First.456-chosen\\n")
    assert code != 0, "the old password still works"


def test_repeated_wrong_passwords_lock_the_principal(client: Client) -> None:
    uid = f"u{uuid.uuid4().hex[:8]}"
    _add_user(client, uid, "Right.123-password", by_directory_manager=True)
    policy = client.run(
        ADMIN_LDAP + f'ldapsearch -LLL -Q -Y GSSAPI -H "$LDAP" -b '
        f'"cn=global_policy,cn=EXAMPLE.TEST,cn=kerberos,{SUFFIX}" krbPwdMaxFailure',
        env={**admin_env(client), "LDAP": LDAP})
    limit = int(next(line.split(": ")[1] for line in policy.stdout.splitlines()
                     if line.startswith("krbPwdMaxFailure")))
    for _ in range(limit):
        assert _kinit(client, uid, "Wrong.000-password\\n")[0] != 0
    code, out = _kinit(client, uid, "Right.123-password\\n")
    assert code != 0, "the right password still works after the realm's lockout limit"
    assert "revoked" in out.lower() or "locked" in out.lower(), out
