"""A stock FreeIPA client joins the server, in both modes (the split stack and the monolith,
each behind the server name's proxy): Debian trixie's own freeipa-client 4.12.4,
sssd and krb5-user (not ipabuild's build) run ``ipa-client-install`` against the one
server name, both ways FreeIPA documents (admin's password; a one-time password from
``ipa host-add --random``), then SSSD resolves and PAM authenticates an IPA user, the host
keytab works, anonymous PKINIT (``kinit -n``) against the KDC's certificate from the
stack's Dogtag works, the server records the keytab, and ``--uninstall`` removes the host
again.

The client is a container on the stack's network with a host name under the domain and
no systemd as init: ``sssd -i`` runs in the foreground (systemctl, present as a binary,
fails, which ipa-client-install logs and goes past). It runs as root in a user namespace
of its own (``--userns=auto``): an enrolling host's root, never the host's."""

from __future__ import annotations

import contextlib
import random
import subprocess
import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.integration.conftest import ROOT
from tests.integration.otp import add_otp_user, add_user, totp
from tests.integration.stack_client import Client
from tests.integration.test_ipa_api import ipa

IMAGE = "localhost/ipabuild-test/enrol-client:latest"
PACKAGES = ("freeipa-client sssd krb5-user krb5-pkinit systemd pamtester ldap-utils curl "
            "oathtool")
SERVER = "ipa.example.test"
INSTALL = ("ipa-client-install -U --server ipa.example.test --domain example.test "
           "--realm EXAMPLE.TEST --no-ntp --no-nisdomain --no-ssh --no-sshd --fixed-primary")
# After enrolment: SSSD in the foreground (no systemd here), then what a host does.
CHECKS = r"""
klist -k /etc/krb5.keytab | grep -q "host/$(hostname -f)@EXAMPLE.TEST" && echo keytab-ok
kinit -k && klist | grep -q 'krbtgt/EXAMPLE.TEST@EXAMPLE.TEST' && echo kinit-k-ok && kdestroy
kinit -n -c /tmp/anon && klist -c /tmp/anon | grep -q WELLKNOWN/ANONYMOUS && echo kinit-n-ok
(sssd -i -d 0 >/tmp/sssd.log 2>&1 &)
for i in $(seq 60); do getent passwd "$U" >/dev/null && break; sleep 1; done
getent passwd "$U" && id "$U" && getent group "$G"
printf '%s\n' "$UPW" | pamtester login "$U" authenticate && echo pam-ok
printf '%s\n' "wrong-$UPW" | pamtester login "$U" authenticate || echo pam-refuses-wrong
"""


@pytest.fixture(scope="module")
def enrol_image() -> str:
    """Debian trixie's stock client packages on the trixie base ipabuild bootstrapped."""
    from ipabuild.build.bases import base_reference
    from ipabuild.spec.load import load_project

    base = base_reference(load_project(ROOT), "debian", "trixie")
    # policy-rc.d: no service is started while packages install (oddjob's would ask a
    # systemd that does not run here).
    containerfile = (f"FROM {base}\n"
                     "RUN printf '#!/bin/sh\\nexit 101\\n' >/usr/sbin/policy-rc.d "
                     "&& chmod 755 /usr/sbin/policy-rc.d\n"
                     "RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install "
                     f"-y -q --no-install-recommends {PACKAGES} && rm -rf /var/lib/apt/lists/*\n")
    result = subprocess.run(["buildah", "bud", "--layers", "-t", IMAGE, "-f", "-", str(ROOT)],
                            input=containerfile, capture_output=True, text=True, timeout=1200,
                            check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return IMAGE


@pytest.fixture(scope="module")
def user(ipa_client: Client) -> dict[str, str]:
    """An IPA user with a password of its own (the initial one changed, as users do) in a
    group of its own. Its UID and GID are given, below 65536: the enrolling container's
    user namespace maps 65536 IDs, and SSSD's krb5_child switches to the user's IDs to
    authenticate (IPA's own range, 640400000 and up here, exists on a real host)."""
    return add_user(ipa_client, number=str(random.randint(20000, 60000)),
                    group=f"eng{uuid.uuid4().hex[:5]}")


@contextlib.contextmanager
def enrolling_host(client: Client, image: str, host: str) -> Iterator[Callable[..., str]]:
    """A client container named ``host`` on the stack's network (removed afterwards);
    yields ``run(script, **env)``, which runs a shell script in it and returns its output
    (asserting success)."""
    name = f"ipabuild-test-{host.split('.')[0]}"
    argv = ["podman", "run", "-d", "--name", name, "--userns=auto", "--network",
            f"ipabuild-{client.stack}", "--hostname", host]
    argv += [f"--add-host={entry}" for entry in client.hosts()]
    subprocess.run([*argv, image, "sleep", "infinity"], capture_output=True, text=True,
                   timeout=120, check=True)

    def run(script: str, **env: str) -> str:
        command = ["podman", "exec", "-i"]
        for key, value in env.items():
            command += ["-e", f"{key}={value}"]
        result = subprocess.run([*command, name, "bash", "-c", script], capture_output=True,
                                text=True, timeout=600, check=False)
        out = result.stdout + result.stderr
        assert result.returncode == 0, out[-6000:]
        return out

    try:
        yield run
    finally:
        subprocess.run(["podman", "rm", "-f", "-v", "-t", "0", name], capture_output=True,
                       check=False)


def _host_show(client: Client, host: str) -> str:
    return ipa(client, 'ipa host-show "$H"', H=host)


def _assert_enrolled_and_working(out: str, user: dict[str, str]) -> None:
    assert "The ipa-client-install command was successful" in out, out[-6000:]
    for sign in ("keytab-ok", "kinit-k-ok", "kinit-n-ok", "pam-ok", "pam-refuses-wrong"):
        assert sign in out, (sign, out[-6000:])
    assert f"{user['U']}:*:" in out, out[-6000:]  # getent passwd through SSSD
    assert f"({user['G']})" in out, out[-6000:]  # id lists the IPA group


def test_enrol_with_admins_password_then_uninstall(ipa_client: Client, enrol_image: str,
                                                   user: dict[str, str]) -> None:
    client = ipa_client
    host = f"c{uuid.uuid4().hex[:6]}.example.test"
    with enrolling_host(client, enrol_image, host) as run:
        out = run(f'{INSTALL} -p admin -w "$PW" 2>&1 && {CHECKS}',
                  PW=client.secret("admin-password"), **user)
        _assert_enrolled_and_working(out, user)
        assert "Keytab: True" in _host_show(client, host)
        run("ipa-client-install --uninstall -U 2>&1")
        assert "host-keys-gone" in run('klist -k /etc/krb5.keytab 2>/dev/null '
                                       '| grep -q "host/" || echo host-keys-gone')
    shown = _host_show(client, host)
    assert "Keytab: False" in shown, shown  # unenrolled: the host's keys are gone


def test_enrol_with_a_one_time_password(ipa_client: Client, enrol_image: str,
                                        user: dict[str, str]) -> None:
    client = ipa_client
    host = f"o{uuid.uuid4().hex[:6]}.example.test"
    added = ipa(client, 'ipa host-add "$H" --random --force', H=host)
    otp = added.split("Random password: ", 1)[1].split()[0]
    with enrolling_host(client, enrol_image, host) as run:
        out = run(f'{INSTALL} -w "$OTP" 2>&1 && {CHECKS}', OTP=otp, **user)
        _assert_enrolled_and_working(out, user)
    shown = _host_show(client, host)
    assert "Keytab: True" in shown and "Password: False" in shown, shown


def test_otp_user_logs_in_with_password_and_code(ipa_client: Client, enrol_image: str) -> None:
    """Two-factor: the KDC's OTP preauth asks ipa-otpd in the kdc container, which checks
    password+code against the user's TOTP token in the directory. On an enrolled host:
    ``kinit`` with FAST armor from anonymous PKINIT (OTP travels only inside FAST), the
    password alone refused; then the Web UI's forms login with password+code (ipaserver's
    own armored kinit) answers 200, and with the password alone 401."""
    client = ipa_client
    otp_user = add_otp_user(client)
    now, later = totp(otp_user["SECRET"]), totp(otp_user["SECRET"], step=1)
    host = f"t{uuid.uuid4().hex[:6]}.example.test"
    with enrolling_host(client, enrol_image, host) as run:
        run(f'{INSTALL} -p admin -w "$PW" 2>&1', PW=client.secret("admin-password"))
        out = run(r"""
kinit -n -c /tmp/armor && echo armor-ok
printf '%s\n' "$UPW" | kinit -T /tmp/armor "$U" >/dev/null 2>&1 || echo password-alone-refused
printf '%s%s\n' "$UPW" "$CODE" | kinit -T /tmp/armor "$U" &&
    klist | grep -q "krbtgt/EXAMPLE.TEST" && echo otp-kinit-ok
login() { curl -s -o /dev/null -w '%{http_code}\n' --cacert /etc/ipa/ca.crt \
    -H "Referer: https://ipa.example.test/ipa" --data-urlencode "user=$U" \
    --data-urlencode "password=$1" https://ipa.example.test/ipa/session/login_password; }
echo "form-password-alone: $(login "$UPW")"
echo "form-otp: $(login "$UPW$LATER")"
""", CODE=now, LATER=later, **otp_user)
    for sign in ("armor-ok", "password-alone-refused", "otp-kinit-ok",
                 "form-password-alone: 401", "form-otp: 200"):
        assert sign in out, (sign, out[-4000:])
