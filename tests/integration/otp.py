"""An IPA user who logs in with password+one-time code, as FreeIPA's two-factor users do:
a password of its own (the initial one changed first, or every login would ask for a new
one), ``--user-auth-type=otp`` and a TOTP token from ``ipa otptoken-add``. The codes come
from ``oathtool``, the way a phone's authenticator makes them from the token's secret."""

from __future__ import annotations

import re
import subprocess
import uuid

from tests.integration.stack_client import Client
from tests.integration.test_ipa_api import ipa


def add_user(client: Client, number: str | None = None, group: str | None = None
             ) -> dict[str, str]:
    """A new IPA user (optionally with UID/GID ``number`` and in a new ``group``) whose
    initial password has been changed: ``U`` is its name, ``UPW`` its password."""
    name = f"u{uuid.uuid4().hex[:7]}"
    initial, chosen = f"Init-{uuid.uuid4().hex[:10]}", f"Mine-{uuid.uuid4().hex[:10]}"
    ids = '--uid "$N" --gidnumber "$N"' if number else ""
    grouping = ('&& ipa group-add "$G" >/dev/null && ipa group-add-member "$G" --users "$U" '
                '>/dev/null ' if group else "")
    ipa(client, 'printf "%s\\n%s\\n" "$IPW" "$IPW" | '
                f'ipa user-add "$U" --first Two --last Factor {ids} --password >/dev/null '
                f'{grouping}&& kdestroy && '
                'printf "%s\\n%s\\n%s\\n" "$IPW" "$CPW" "$CPW" | kinit "$U" >/dev/null',
        U=name, N=number or "", G=group or "", IPW=initial, CPW=chosen)
    user = {"U": name, "UPW": chosen}
    if group:
        user["G"] = group
    return user


def add_otp_user(client: Client) -> dict[str, str]:
    """A user who may log in only with password+code; ``SECRET`` is its token's base32
    secret (from the otpauth:// URI ``ipa otptoken-add`` prints)."""
    user = add_user(client)
    added = ipa(client, 'ipa user-mod "$U" --user-auth-type=otp >/dev/null && '
                        'ipa otptoken-add --owner="$U" --type=totp --no-qrcode', U=user["U"])
    found = re.search(r"otpauth://totp/\S*[?&]secret=([A-Z2-7]+)", added)
    assert found, added
    return {**user, "SECRET": found.group(1)}


def totp(secret: str, step: int = 0) -> str:
    """The TOTP code of the current 30-second step, or of ``step`` steps later (a code is
    accepted once: a second login in the same step needs the next one; FreeIPA accepts
    codes within its TOTP window, 300 s by default)."""
    out = subprocess.run(["oathtool", "--totp", "-b", "-w", str(step), secret],
                         capture_output=True, text=True, check=True, timeout=30).stdout
    return out.split()[step]
