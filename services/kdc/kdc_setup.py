"""The kdc's setup of its realm at every start, before its daemons run: FreeIPA's
KrbInstance steps, done over ldap's LDAPI socket (SASL EXTERNAL) with ipa-kdb itself.

1. Wait for the IPA directory: ldap's port opens only once its IPA setup is done; then
   the realm's container entry must answer over LDAPI (the kdc shares ldap's ldapi
   volume, and in Kubernetes its pod).
2. The realm: found (its ``krbMKey``) → the master key is stashed on tmpfs from the
   mounted secret; absent → created through ipa-kdb (KrbInstance.__init_ipa_kdb). No
   password reaches disk.
3. The stack's host and service entries and the HTTP/ → ldap/ delegation rule
   (``ipa-services.ldif``; entries already there stay).
4. Principal aliases (what FreeIPA's service-add-principal adds): the names a client
   asks a ticket for once its resolver canonicalised the name it was given. The short
   name (``ldap``, as /etc/hosts answers locally), the name under each resolver search
   domain (``dns.podman`` locally, ``<namespace>.svc.<cluster domain>`` in a pod, so
   Service names work), and the stack's one server name (short and full), which
   FreeIPA's clients use for LDAP and HTTP alike, as on a master.
5. Keys of the service principals, set from their secrets when they have none (httpd
   and ns-slapd derive the same keys from the same secrets), never changed after.
6. The anonymous principal and FreeIPA's ACI for it (KrbInstance.add_anonymous_principal).
7. admin's keys, made by ipa-pwd-extop from the password (DsInstance.change_admin_password).

Every step is idempotent: a restart runs them all again and changes nothing. A failure
is one ``FATAL:`` line with what the tool said, and exit status 1 (the container's
restart policy tries again).

Usage: ``python3 kdc_setup.py RUN_DIR`` with IPA_REALM, IPA_SUFFIX, IPA_SERVER set.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

SECRETS = Path(os.environ.get("IPABUILD_SECRETS_DIR", "/run/secrets"))
PRINCIPALS = Path("/usr/share/ipabuild/principals")
SERVICES_LDIF = Path("/usr/share/ipabuild/ipa-services.ldif")
ANONYMOUS_ACI = Path("/usr/share/ipa/anon-princ-aci.ldif")
RESOLV_CONF = Path("/etc/resolv.conf")
# The enctypes and (normal) salt ipabuild_keytab derives on the other side (lib.sh).
SERVICE_KEYSALTS = "aes256-sha2:normal aes128-sha2:normal aes256-cts:normal aes128-cts:normal"
DIRECTORY_WAIT = 120  # seconds for the realm's entry to answer over LDAPI
ALREADY_EXISTS, VALUE_EXISTS = 68, 20  # LDAP result codes a re-run meets
NO_SUCH_OBJECT = 32  # ldapsearch's exit status for a base entry that is not there


class SetupError(Exception):
    """A step that failed; its message is the FATAL line."""


def log(message: str) -> None:
    """One line as ipabuild_log writes it (lib.sh)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(f"{stamp} ipabuild[kdc]: {message}", file=sys.stderr, flush=True)


def secret(name: str, directory: Path = SECRETS) -> str:
    """A secret mounted as a file, without newlines (never from the environment)."""
    path = directory / name
    try:
        value = path.read_text().replace("\n", "")
    except OSError:
        value = ""
    if not value:
        raise SetupError(f"secret '{name}' missing: mount it as a file at {path} (podman: "
                         f"--secret {name}; Kubernetes: a Secret volume; ipabuild secrets "
                         "writes them)")
    return value


@dataclass(frozen=True)
class Realm:
    """The names the setup works with, from the container's environment."""

    realm: str
    suffix: str
    server: str

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Realm:
        missing = [n for n in ("IPA_REALM", "IPA_SUFFIX", "IPA_SERVER") if not environ.get(n)]
        if missing:
            raise SetupError(f"{', '.join(missing)} not set (the image sets them)")
        return cls(environ["IPA_REALM"], environ["IPA_SUFFIX"], environ["IPA_SERVER"])

    @property
    def socket(self) -> Path:
        """ldap's LDAPI socket, on the volume the kdc shares with it."""
        return Path(f"/run/ipa-ldapi/slapd-{self.realm.replace('.', '-')}.socket")

    @property
    def container_dn(self) -> str:
        return f"cn={self.realm},cn=kerberos,{self.suffix}"

    @property
    def admin_dn(self) -> str:
        return f"uid=admin,cn=users,cn=accounts,{self.suffix}"


def ldapi_uri(path: Path) -> str:
    return "ldapi://" + str(path).replace("/", "%2F")


def ldap_errors(output: str, tolerated: Iterable[int]) -> list[str]:
    """The error lines of an ``ldapmodify -c`` run: its own (``ldapmodify: invalid
    format ...``) and the server's (``ldap_...``), less the results a re-run meets (an
    entry or value already there)."""
    allowed = tuple(f"({code})" for code in tolerated)
    return [line for line in output.splitlines()
            if line.startswith(("ldap_", "ldapmodify: "))
            and not line.rstrip().endswith(allowed)]


class Ldapi:
    """The IPA directory over LDAPI with SASL EXTERNAL, through the OpenLDAP tools."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.auth = ["-Q", "-Y", "EXTERNAL", "-H", uri]

    def search(self, base: str, *args: str) -> subprocess.CompletedProcess[str]:
        """A base-scope search (filter and attributes in ``args``)."""
        return subprocess.run(["ldapsearch", "-LLL", "-o", "ldif-wrap=no", *self.auth,
                               "-s", "base", "-b", base, *args],
                              capture_output=True, text=True, check=False)

    def answers(self, base: str) -> bool:
        """Whether the base entry can be read now (False on any failure: waited for)."""
        done = self.search(base, "dn")
        return done.returncode == 0 and done.stdout.startswith("dn")

    def has(self, base: str, *args: str) -> bool:
        """Whether the base entry exists and matches the filter in ``args``. A failed
        search is an error, never "absent": a realm would be created again over an
        existing one, or admin's password reset."""
        done = self.search(base, *args)
        if done.returncode == NO_SUCH_OBJECT:
            return False
        if done.returncode != 0:
            raise SetupError(f"could not search {base} over LDAPI: "
                             f"{(done.stdout + done.stderr).strip()}")
        return done.stdout.startswith("dn")

    def modify(self, ldif: str, what: str, tolerated: Iterable[int] = ()) -> None:
        """Apply ``ldif`` (continuing past errors); results in ``tolerated`` are fine."""
        done = subprocess.run(["ldapmodify", "-c", *self.auth], input=ldif,
                              capture_output=True, text=True, check=False)
        output = done.stdout + done.stderr
        errors = ldap_errors(output, tolerated)
        if errors or (done.returncode != 0 and not ldap_errors(output, ())):
            raise SetupError(f"could not {what}: {' '.join(errors) or output.strip()}")


def kadmin(query: str = "", stdin: str = "") -> str:
    """kadmin.local with FreeIPA's override (installutils.kadmin: ipa-kdb refuses
    principals outside IPA's rules otherwise): one ``query`` (-q), or commands on stdin,
    so that no password appears in argv. Its output, errors included."""
    argv = ["kadmin.local", "-x", "ipa-setup-override-restrictions"]
    done = subprocess.run(argv + (["-q", query] if query else []), input=stdin,
                          capture_output=True, text=True, check=False)
    return done.stdout + done.stderr


def principal_info(principal: str) -> str:
    return kadmin(f"getprinc {principal}")


def key_count(info: str) -> int | None:
    """``Number of keys`` of a getprinc answer; None when there is no such principal."""
    if not re.search(r"^Principal:", info, re.M):
        return None
    found = re.search(r"^Number of keys: (\d+)", info, re.M)
    return int(found.group(1)) if found else 0


def run_tool(argv: list[str], what: str, stdin: str = "") -> None:
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SetupError(f"could not {what}: {(done.stdout + done.stderr).strip()}")


# --- 1. the directory -------------------------------------------------------------------

def wait_tcp(host: str, port: int, why: str, timeout: float = 0,
             clock: Callable[[], float] = time.monotonic) -> None:
    """Wait for ``host:port`` to accept TCP connections (tries every 0.25 s: a peer's
    restart takes about a second), saying every 10 s what is awaited and why."""
    started, said = clock(), float("-inf")
    while True:
        try:
            with socket.create_connection((host, port), timeout=2):
                break
        except OSError:
            pass
        if clock() - said >= 10:
            log(f"waiting for {host}:{port} ({why})")
            said = clock()
        if timeout and clock() - started >= timeout:
            raise SetupError(f"gave up after {clock() - started:.0f}s waiting for "
                             f"{host}:{port} ({why})")
        time.sleep(0.25)
    log(f"{host}:{port} is up ({why})")


def wait_directory(realm: Realm, directory: Ldapi, limit: int = DIRECTORY_WAIT) -> None:
    for waited in range(limit):
        if realm.socket.is_socket() and directory.answers(realm.container_dn):
            return
        if waited % 10 == 0:
            log(f"waiting for {realm.container_dn} over {realm.socket} (the kdc must share "
                "ldap's ldapi volume and user namespace)")
        time.sleep(1)
    raise SetupError(f"cannot reach the directory over LDAPI at {realm.socket}: mount "
                     "ldap's ldapi volume at /run/ipa-ldapi (Kubernetes: run in ldap's pod)")


# --- 2. the realm -----------------------------------------------------------------------

def ensure_realm(realm: Realm, directory: Ldapi, run: Path) -> None:
    key = secret("kdc-master-key")
    if directory.has(realm.container_dn, "(krbMKey=*)", "dn"):
        log(f"realm {realm.realm} found; stashing the master key")
        run_tool(["kdb5_util", "stash", "-f", str(run / "master.stash")],
                 "stash the master key", f"{key}\n")
    else:
        log(f"creating realm {realm.realm} through ipa-kdb")
        run_tool(["kdb5_util", "create", "-s", "-r", realm.realm,
                  "-x", "ipa-setup-override-restrictions"],
                 f"create realm {realm.realm}", f"{key}\n{key}\n")


# --- 3.-5. services, aliases, keys -------------------------------------------------------

def service_principals(text: str) -> list[tuple[str, str]]:
    """(principal, secret) of each line of the principals file (comments skipped)."""
    rows = []
    for line in text.splitlines():
        fields = line.split()
        if fields and not fields[0].startswith("#"):
            rows.append((fields[0], fields[1] if len(fields) > 1 else ""))
    return rows


def search_domains(resolv_conf: str) -> list[str]:
    """The resolver's ``search`` and ``domain`` names, sorted and once each."""
    names = {name for line in resolv_conf.splitlines()
             if (fields := line.split()) and fields[0] in ("search", "domain")
             for name in fields[1:]}
    return sorted(names)


def alias_names(host: str, server: str, domains: list[str]) -> list[str]:
    """The other names a client may ask ``host``'s service ticket for (see step 4)."""
    short, server_short = host.split(".", 1)[0], server.split(".", 1)[0]
    names = [short, *(f"{short}.{d}" for d in domains),
             server, server_short, *(f"{server_short}.{d}" for d in domains)]
    return [name for name in dict.fromkeys(names) if name != host]


def aliases_ldif(principals: list[tuple[str, str]], realm: Realm,
                 domains: list[str]) -> tuple[str, list[str]]:
    """The modifications adding each principal's aliases, and the aliases."""
    changes, added = [], []
    for principal, _secret in principals:
        kind, _, rest = principal.partition("/")
        host = rest.split("@", 1)[0]
        for name in alias_names(host, realm.server, domains):
            alias = f"{kind}/{name}@{realm.realm}"
            changes.append(f"dn: krbprincipalname={principal},cn=services,cn=accounts,"
                           f"{realm.suffix}\nchangetype: modify\nadd: krbPrincipalName\n"
                           f"krbPrincipalName: {alias}\n")
            added.append(alias)
    return "\n".join(changes), added


def ensure_service_keys(principals: list[tuple[str, str]]) -> None:
    for principal, secret_name in principals:
        if key_count(principal_info(principal)) != 0:
            continue  # keys set (never changed after), or no such principal
        # What cpw says is never shown: its command line holds the password.
        kadmin(stdin=f'cpw -e "{SERVICE_KEYSALTS}" -pw {secret(secret_name)} {principal}\n')
        info = principal_info(principal)
        if not key_count(info):
            raise SetupError(f"could not set the keys of {principal}: {info.strip()}")
        log(f"set the keys of {principal}")


# --- 6.-7. anonymous, admin ---------------------------------------------------------------

def ensure_anonymous(realm: Realm, directory: Ldapi) -> None:
    """The principal once; its ACI at every start (there already: nothing changes), so
    a setup stopped between the two completes."""
    anonymous = f"WELLKNOWN/ANONYMOUS@{realm.realm}"
    if key_count(principal_info(anonymous)) is None:
        said = kadmin(f"addprinc -randkey {anonymous}")
        if key_count(principal_info(anonymous)) is None:
            raise SetupError(f"could not create {anonymous}: {said.strip()}")
        log(f"created {anonymous}")
    aci = ANONYMOUS_ACI.read_text().replace("$SUFFIX", realm.suffix)
    directory.modify(aci.replace("$REALM", realm.realm), f"add the ACI for {anonymous}",
                     (VALUE_EXISTS,))


def ensure_admin_keys(realm: Realm, directory: Ldapi) -> None:
    if directory.has(realm.admin_dn, "(krbPrincipalKey=*)", "dn"):
        return
    with tempfile.NamedTemporaryFile("w", dir="/tmp", prefix="admin.") as password:
        password.write(secret("admin-password"))  # NamedTemporaryFile: mode 0600
        password.flush()
        run_tool(["ldappasswd", *directory.auth, "-T", password.name, realm.admin_dn],
                 "set admin's password")
    log(f"admin@{realm.realm} has its keys (ipa-pwd-extop)")


def endpoint(value: str) -> tuple[str, int]:
    """``host:port`` (KDC_DIRECTORY_READY) as a pair."""
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise SetupError(f"KDC_DIRECTORY_READY={value!r} is not HOST:PORT (e.g. ldap:3389)")
    return host, int(port)


def wait_timeout(value: str) -> float:
    """IPABUILD_WAIT_TIMEOUT in seconds; empty or 0 waits for ever."""
    try:
        return float(value or 0)
    except ValueError:
        raise SetupError(f"IPABUILD_WAIT_TIMEOUT={value!r} is not a number of seconds "
                         "(0 waits for ever)") from None


def setup(realm: Realm, run: Path, ready: tuple[str, int], timeout: float) -> None:
    directory = Ldapi(ldapi_uri(realm.socket))
    wait_tcp(*ready, f"the IPA directory of realm {realm.realm}", timeout)
    wait_directory(realm, directory)
    ensure_realm(realm, directory, run)
    directory.modify(SERVICES_LDIF.read_text(), "add the stack's hosts and services",
                     (ALREADY_EXISTS, VALUE_EXISTS))
    principals = service_principals(PRINCIPALS.read_text())
    try:
        resolv = RESOLV_CONF.read_text()
    except OSError:
        resolv = ""
    changes, aliases = aliases_ldif(principals, realm, search_domains(resolv))
    directory.modify(changes, "add the service principals' aliases", (VALUE_EXISTS,))
    log("service principal aliases: " + " ".join(aliases))
    ensure_service_keys(principals)
    ensure_anonymous(realm, directory)
    ensure_admin_keys(realm, directory)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        setup(Realm.from_environ(os.environ), Path(argv[1]),
              endpoint(os.environ.get("KDC_DIRECTORY_READY", "ldap:3389")),
              wait_timeout(os.environ.get("IPABUILD_WAIT_TIMEOUT", "")))
    except SetupError as exc:
        log(f"FATAL: {exc}")
        return 1
    except OSError as exc:  # a file of the image or a tool missing
        log(f"FATAL: {exc} (the image is incomplete: rebuild it with `ipabuild images`)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
