"""FreeIPA's own API and `ipa` CLI against the split stack (and the monolith, which runs
the same services: ``ipa_client`` is each mode in turn): the http service runs
ipaserver under mod_wsgi, authenticates with SPNEGO and reaches ldap with the caller's
delegated (S4U2Proxy) credentials. Every command runs in the client toolbox
(services/client) from a fresh container, as a user would run it."""

from __future__ import annotations

import subprocess
import time
import uuid

import pytest

from tests.integration.podman_cli import sh
from tests.integration.stack_client import KINIT_ADMIN, Client, admin_env
from tests.integration.test_stack import eventually

ADMIN = f"{KINIT_ADMIN} && "


def ipa(client: Client, script: str, **env: str) -> str:
    """Run ``script`` as admin (kinit first); assert it succeeded; its output."""
    result = client.run(ADMIN + script, env={**admin_env(client), **env})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def _kinit(client: Client, principal: str, answers: str) -> tuple[int, str]:
    result = client.run('printf "$ANSWERS" | kinit "$P" && klist',
                        env={"ANSWERS": answers, "P": principal})
    return result.returncode, result.stdout + result.stderr


@pytest.fixture(scope="module")
def alice(ipa_client: Client) -> dict[str, str]:
    """alice, added through the API with an initial password (IPA marks it expired)."""
    user = f"alice{uuid.uuid4().hex[:4]}"
    initial, chosen = f"Init-{uuid.uuid4().hex[:10]}", f"Mine-{uuid.uuid4().hex[:10]}"
    out = ipa(ipa_client, 'printf "%s\\n%s\\n" "$IPW" "$IPW" | '
                      'ipa user-add "$U" --first Alice --last Liddell --password',
              U=user, IPW=initial)
    assert f'Added user "{user}"' in out, out
    return {"uid": user, "initial": initial, "chosen": chosen}


def test_ipa_ping_answers_with_the_server_version(ipa_client: Client) -> None:
    out = ipa(ipa_client, "ipa ping")
    assert "IPA server version 4.12.4" in out, out


def test_user_add_find_show(ipa_client: Client, alice: dict[str, str]) -> None:
    out = ipa(ipa_client, 'ipa user-find "$U" && ipa user-show "$U" --all', U=alice["uid"])
    assert "1 user matched" in out, out
    assert "Last name: Liddell" in out and "First name: Alice" in out, out
    assert f"Principal name: {alice['uid']}@EXAMPLE.TEST" in out, out
    # ipa-pwd-extop made Kerberos keys from the password the API set.
    assert "Kerberos keys available: True" in out, out
    # DNA gave real IDs (not the -1 placeholder) and Managed Entries the private group.
    uid_number = next(line.split(":")[1].strip() for line in out.splitlines()
                      if line.strip().startswith("UID:"))
    assert int(uid_number) > 0, out


def test_group_add_and_membership(ipa_client: Client, alice: dict[str, str]) -> None:
    group = f"readers{uuid.uuid4().hex[:4]}"
    out = ipa(ipa_client, 'ipa group-add "$G" --desc "Readers" && '
                      'ipa group-add-member "$G" --users "$U" && ipa group-show "$G" && '
                      'ipa user-show "$U"', G=group, U=alice["uid"])
    assert "Number of members added 1" in out, out
    assert f"Member users: {alice['uid']}" in out, out
    assert group in out.split("Member of groups:")[-1], out


def test_first_kinit_changes_the_expired_password_then_ipa_passwd_resets_it(
        ipa_client: Client, alice: dict[str, str]) -> None:
    user, initial, chosen = alice["uid"], alice["initial"], alice["chosen"]
    code, out = _kinit(ipa_client, user, f"{initial}\\n{chosen}\\n{chosen}\\n")
    assert code == 0 and "expired" in out.lower(), out
    code, out = _kinit(ipa_client, user, f"{initial}\\n")
    assert code != 0, "the initial password still works after the change:\n" + out

    # ipa passwd by an administrator: a reset, so IPA marks it expired again and the
    # user's next kinit changes it. (A user's own: test_ipa_certs.py.)
    reset, newer = f"Reset-{uuid.uuid4().hex[:10]}", f"New-{uuid.uuid4().hex[:10]}"
    out = ipa(ipa_client, 'printf "%s\\n%s\\n" "$NEW" "$NEW" | ipa passwd "$U"', U=user, NEW=reset)
    assert f'Changed password for "{user}@EXAMPLE.TEST"' in out, out
    code, out = _kinit(ipa_client, user, f"{chosen}\\n")
    assert code != 0, "the password before the reset still works:\n" + out
    code, out = _kinit(ipa_client, user, f"{reset}\\n{newer}\\n{newer}\\n")
    assert code == 0 and "expired" in out.lower(), out


def test_disabled_user_cannot_kinit(ipa_client: Client) -> None:
    user, password = f"bob{uuid.uuid4().hex[:4]}", f"Pw-{uuid.uuid4().hex[:10]}"
    chosen = f"Bob-{uuid.uuid4().hex[:10]}"
    ipa(ipa_client, 'printf "%s\\n%s\\n" "$P" "$P" | ipa user-add "$U" --first Bob --last B '
                '--password', U=user, P=password)
    code, out = _kinit(ipa_client, user, f"{password}\\n{chosen}\\n{chosen}\\n")
    assert code == 0, out
    out = ipa(ipa_client, 'ipa user-disable "$U"', U=user)
    assert f'Disabled user account "{user}"' in out, out
    code, out = _kinit(ipa_client, user, f"{chosen}\\n")
    assert code != 0, "a disabled user got a ticket:\n" + out
    assert "revoked" in out.lower() or "disabled" in out.lower(), out


def test_host_and_service_add(ipa_client: Client) -> None:
    """host-add and service-add through the API (ipa-getkeytab and certificates for such
    a service: test_ipa_certs.py)."""
    host = f"web{uuid.uuid4().hex[:4]}.example.test"
    out = ipa(ipa_client, 'ipa host-add "$H" --force && ipa service-add "HTTP/$H" --force && '
                      'ipa service-show "HTTP/$H" && ipa host-show "$H"', H=host)
    assert f'Added host "{host}"' in out, out
    assert f'Added service "HTTP/{host}@EXAMPLE.TEST"' in out, out
    assert f"Managed by: {host}" in out, out


def test_api_with_ldap_down_names_the_directory(stack: str, client: Client) -> None:
    """With ldap stopped and http up, the API answers FreeIPA's own error naming the
    directory it cannot reach (patch 0005), not an HTTP 500 page; after ldap is back
    the API works again."""
    ldap = f"ipabuild-{stack}-ldap"
    # Tickets (admin's TGT and HTTP/'s service ticket) while ldap, and so the KDC's
    # database, is up; they travel to the second client container as its ccache.
    prepared = client.run(ADMIN + "ipa ping >/dev/null && "
                          "base64 -w0 \"$(klist | sed -n 's/^Ticket cache: FILE://p')\"",
                          env=admin_env(client))
    assert prepared.returncode == 0, prepared.stdout[-2000:] + prepared.stderr[-2000:]
    ccache = prepared.stdout.strip().splitlines()[-1]
    sh(["podman", "stop", "-t", "10", ldap])
    try:
        result = client.run(
            'printf "%s" "$CC" | base64 -d > /tmp/cc && export KRB5CCNAME=FILE:/tmp/cc && '
            "ipa user-find admin", env={"CC": ccache})
    finally:
        sh(["podman", "start", ldap])
        deadline = time.monotonic() + 120
        while subprocess.run(["podman", "healthcheck", "run", ldap],
                             capture_output=True, check=False).returncode != 0:
            assert time.monotonic() < deadline, "ldap not healthy again"
            time.sleep(1)

        def api_answers() -> None:
            again = client.run(ADMIN + "ipa user-find admin", env=admin_env(client))
            assert again.returncode == 0 and "1 user matched" in again.stdout, (
                again.stdout + again.stderr)
        eventually(api_answers, timeout=120)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "cannot connect to 'ldaps://ldap.example.test:3636'" in out, out
    assert "Internal Server Error" not in out and "Traceback" not in out, out
