"""Run real clients (kinit, ldapwhoami, curl, openssl) from a separate container on a stack's
network, the way a user's machine would talk to the split stack."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.integration.podman_cli import sh

CLIENT_IMAGE = "localhost/ipabuild/client:latest"
ROOT = Path(__file__).resolve().parents[2]
REALM = "EXAMPLE.TEST"
DOMAIN = "example.test"
KINIT_ADMIN = 'printf "%s" "$PW" | kinit admin >/dev/null'


def build_client_image() -> str:
    """The client toolbox (services/client: the ipa CLI, kinit, ldapsearch, curl), built
    or found cached by ipabuild itself, as a user gets it."""
    result = subprocess.run([sys.executable, "-m", "ipabuild.cli", "--root", str(ROOT), "images",
                             "--service", "client", "--quiet"],
                            capture_output=True, text=True, timeout=1800, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return CLIENT_IMAGE


def krb5_conf(kdc: str, udp_limit: int) -> str:
    """A client krb5.conf; ``udp_limit`` 1 forces TCP, 65535 makes UDP the first try."""
    # forwardable: the API's constrained delegation (S4U2Proxy) needs forwardable
    # evidence tickets, as FreeIPA's own client configuration sets.
    return (f"[libdefaults]\n default_realm = {REALM}\n dns_lookup_kdc = false\n rdns = false\n"
            f" forwardable = true\n"
            f" udp_preference_limit = {udp_limit}\n"
            f"[realms]\n {REALM} = {{\n  kdc = {kdc}\n  kpasswd_server = kdc.{DOMAIN}:8464\n"
            f"  http_anchors = FILE:/tmp/http.pem\n }}\n"
            f"[domain_realm]\n .{DOMAIN} = {REALM}\n")


@dataclass
class Client:
    """A shell in the client container, on the stack's network."""

    stack: str
    secrets_dir: Path
    host_entries: list[str] | None = None  # name:address; default: the stack's own

    def hosts(self) -> list[str]:
        """The stack's fixed ``name:address`` entries (what `ipabuild up` gives each
        container), so the client does not depend on aardvark-dns either; none for a
        stack without them."""
        if self.host_entries is not None:
            return self.host_entries
        listed = sh(["podman", "ps", "-q", "--filter", f"label=io.ipabuild.stack={self.stack}"],
                    check=False).stdout.split()
        if not listed:
            return []
        extra = sh(["podman", "inspect", "--format", "{{json .HostConfig.ExtraHosts}}",
                    listed[0]]).stdout
        return list(json.loads(extra) or [])

    def secret(self, name: str) -> str:
        return (self.secrets_dir / name).read_text().strip()

    def run(self, script: str, kdc: str = f"kdc.{DOMAIN}:8088",
            env: dict[str, str] | None = None,
            udp_limit: int = 1465) -> subprocess.CompletedProcess:
        argv = ["podman", "run", "--rm", "-i", "--network", f"ipabuild-{self.stack}"]
        argv += [f"--add-host={entry}" for entry in self.hosts()]
        for key, value in {**(env or {}), "KRB5_CONF_TEXT": krb5_conf(kdc, udp_limit)}.items():
            argv += ["-e", f"{key}={value}"]
        argv += [CLIENT_IMAGE, "bash", "-c",
                 'printf "%s" "$KRB5_CONF_TEXT" > /tmp/krb5.conf; '
                 "export KRB5_CONFIG=/tmp/krb5.conf; " + script]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def admin_env(client: Client) -> dict[str, str]:
    """The environment KINIT_ADMIN reads the admin password from (never argv)."""
    return {"PW": client.secret("admin-password")}
