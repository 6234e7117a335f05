"""The CA's one-time initialisation (``ipabuild-ca init``): Dogtag's pkispawn.

It runs as the CA's own non-root UID with GID 0, as every split daemon: no root, no
capability, no user namespace of its own. Dogtag 10.10's pkispawn is patched to allow
that (services/ca/patches/0003-...) and configured with the running user as pki_user
and root as pki_group, so everything it creates belongs to this UID and group 0; group 0
then gets the owner's rights, so any UID with GID 0 runs the CA from then on (OpenShift
assigns another UID to every pod).

Steps, each said in the log:

* nothing to do when the instance is initialised (the marker and CS.cfg exist);
* an instance on the volumes without the marker is an interrupted init: the CA never ran
  and issued nothing, so its files are removed (pkispawn replaces the database itself,
  ``pki_ds_remove_data``) and pkispawn runs again;
* wait for ldap (the CA's database) and the realm's master key, which the kdc creates
  (IPA's password plugin refuses the CA admin's password until it exists);
* complete the config volume with the image's /etc/pki files;
* render pkispawn's configuration with the secrets into a 0600 file on tmpfs, deleted
  afterwards: no password lands in the image or on a volume;
* pkispawn, which leaves its Tomcat stopped (services/ca/patches/0001-...; stopped here
  too should it not);
* group 0 gets the owner's rights on the volumes; the marker is written last.

Usage: ``python3 ca_init.py`` (non-root, GID 0, with a passwd entry: the entrypoint
provides one through nss_wrapper where the UID has none).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

INSTANCE = "pki-tomcat"
VOLUMES = (Path("/etc/pki"), Path("/var/lib/pki"), Path("/var/log/pki"))
MARKER = Path("/etc/pki/.ipabuild-initialised")
CS_CFG = Path(f"/etc/pki/{INSTANCE}/ca/CS.cfg")
SHIPPED_ETC_PKI = Path("/usr/share/ipabuild/etc-pki")
CFG_TEMPLATE = Path("/usr/share/ipabuild/pkispawn.cfg.in")
SECRETS_DIR = Path(os.environ.get("IPABUILD_SECRETS_DIR", "/run/secrets"))
TOMCAT_LOG = Path(f"/tmp/ipabuild-ca-tomcat-{INSTANCE}.log")
SYSTEMCTL = "/usr/local/bin/systemctl"
UNIT = f"pki-tomcatd@{INSTANCE}.service"
# What pkispawn leaves outside the instance directories (pointed into the /etc/pki
# volume by the image): its sysconfig, registry, systemd link, and the admin's client db.
STARTED_SIGNS = (f"/etc/pki/{INSTANCE}", f"/var/lib/pki/{INSTANCE}",
                 f"/etc/pki/{INSTANCE}.sysconfig")
LEFTOVERS = (*STARTED_SIGNS, f"/var/log/pki/{INSTANCE}", f"/etc/pki/dogtag/tomcat/{INSTANCE}",
             "/etc/pki/ipabuild-client",
             f"/etc/pki/systemd/pki-tomcatd.target.wants/pki-tomcatd@{INSTANCE}.service")
SLOT = re.compile(r"@[A-Z0-9_]+@")


class InitError(Exception):
    """A step that cannot finish: the message says which and what to do."""


def log(message: str) -> None:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    print(f"{stamp} ipabuild[ca]: {message}", file=sys.stderr, flush=True)


def secret(name: str) -> str:
    path = SECRETS_DIR / name
    try:
        value = path.read_text(encoding="utf-8").replace("\n", "")
    except OSError as exc:
        raise InitError(f"secret '{name}' missing: mount it as a file at {path} (podman: "
                        f"--secret {name}; Kubernetes: a Secret volume)") from exc
    if not value:
        raise InitError(f"secret '{name}' at {path} is empty")
    return value


def cfg_value(value: str) -> str:
    """A configparser value: '%' is its interpolation character, a newline would end
    the value."""
    if "\n" in value or "\r" in value:
        raise InitError("a pkispawn value (a password?) holds a line break")
    return value.replace("%", "%%")


def render_cfg(template: str, values: dict[str, str]) -> str:
    """pkispawn's configuration: the template's @NAME@ slots filled in."""
    for name, value in values.items():
        template = template.replace(f"@{name}@", cfg_value(value))
    missing = sorted({slot for line in template.splitlines() if not line.startswith("#")
                      for slot in SLOT.findall(line)})
    if missing:
        raise InitError(f"pkispawn template slots left unfilled: {', '.join(missing)}")
    return template


def wait_tcp(host: str, port: int, why: str) -> None:
    """Wait for host:port to accept connections, saying what is awaited and why."""
    waited = 0
    while True:
        try:
            with socket.create_connection((host, port), timeout=2):
                log(f"{host}:{port} is up ({why})")
                return
        except OSError:
            if waited % 10 == 0:
                log(f"waiting for {host}:{port} ({why})")
            time.sleep(1)
            waited += 1


def wait_master_key(uri: str, dm_password: str, realm: str, suffix: str) -> None:
    """Wait until the realm entry holds its master key (krbMKey): the kdc writes it when
    it creates the realm, seconds before its own port opens."""
    import ldap  # python3-ldap, which pkispawn itself needs

    if not realm or not suffix:
        raise InitError("IPA_REALM and IPA_SUFFIX must be set (the image sets them)")
    dn = f"cn={realm},cn=kerberos,{suffix}"
    why = f"the realm's master key at {dn}, which IPA's password plugin needs for the CA admin"
    tries = 0
    while True:
        try:
            connection = ldap.initialize(uri)
            try:
                connection.simple_bind_s("cn=Directory Manager", dm_password)
                if connection.search_s(dn, ldap.SCOPE_BASE, "(krbMKey=*)", ["cn"]):
                    log(f"found {why} (the kdc made it)")
                    return
            finally:
                connection.unbind_s()
        except ldap.NO_SUCH_OBJECT:
            pass
        except ldap.INVALID_CREDENTIALS as exc:
            raise InitError(f"the ldap service refuses the secret ldap-dm-password as "
                            f"cn=Directory Manager at {uri}: give both the same secret") from exc
        except ldap.LDAPError:
            pass  # the directory restarting: try again
        if tries % 20 == 0:
            log(f"waiting for {why}")
        time.sleep(0.5)
        tries += 1


def database_exists(uri: str, dm_password: str, base_dn: str) -> bool:
    """Whether the directory already has a backend or mapping tree for the CA's database:
    left by an init that was stopped. Only then has pkispawn anything to remove
    (``pki_ds_remove_data``): its ``ca-db-remove`` is a JVM start, 1 s of a first up,
    that finds nothing on a new stack."""
    import ldap
    import ldap.filter

    value = ldap.filter.escape_filter_chars(base_dn)
    tries = 20  # the directory may be restarting: 10 s of tries, then a clear error
    while True:
        connection = ldap.initialize(uri)
        try:
            connection.simple_bind_s("cn=Directory Manager", dm_password)
            backends = connection.search_s("cn=ldbm database,cn=plugins,cn=config",
                                           ldap.SCOPE_ONELEVEL, f"(nsslapd-suffix={value})",
                                           ["cn"])
            trees = connection.search_s("cn=mapping tree,cn=config", ldap.SCOPE_ONELEVEL,
                                        f"(cn={value})", ["cn"])
            return bool(backends or trees)
        except ldap.LDAPError as exc:
            tries -= 1
            if not tries:
                raise InitError(f"looking for an earlier {base_dn} in the directory at "
                                f"{uri} failed: {exc}") from exc
        finally:
            with contextlib.suppress(ldap.LDAPError):
                connection.unbind_s()
        time.sleep(0.5)


def initialised() -> bool:
    return MARKER.exists() and CS_CFG.exists()


def _reach_and_retry(function, path: str, _exc_info) -> None:  # type: ignore[no-untyped-def]
    """shutil.rmtree's error handler: a folder pkispawn left without search or write
    rights for its owner (an init stopped between two of its chmods gives alias/ 0600)
    is made reachable, then the step is tried again. Root never needed this."""
    for folder in {os.path.dirname(path), path}:
        if os.path.isdir(folder) and not os.path.islink(folder):
            os.chmod(folder, 0o700)
    function(path)


def remove_interrupted_init() -> None:
    """An instance without the marker never finished: remove it so pkispawn can start
    over (it replaces the database itself)."""
    if not any(Path(p).exists() for p in STARTED_SIGNS):
        return
    log(f"CA instance '{INSTANCE}' on the volumes never finished initialising (no "
        f"{MARKER}): removing it and running pkispawn again")
    for path in map(Path, LEFTOVERS):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, onerror=_reach_and_retry)
        elif path.exists() or path.is_symlink():
            path.unlink()


def prepare_volumes(ca_hostname: str) -> None:
    """The config volume may be empty (Kubernetes) or hold the image's files (podman):
    add the shipped /etc/pki files that are missing. The volume roots need only be
    writable by group 0 (the image's and a PVC's are), not owned: pkispawn runs as this
    same user."""
    for volume in VOLUMES:
        if not os.access(volume, os.W_OK | os.X_OK):
            raise InitError(f"{volume} is not writable by UID {os.getuid()} GID "
                            f"{os.getgid()}: give its volume group 0 write access "
                            f"(Kubernetes: fsGroup 0 or an OpenShift PVC; podman: the image's "
                            f"directory, which is group 0 and group-writable)")
    subprocess.run(["cp", "-an", *map(str, SHIPPED_ETC_PKI.iterdir()), "/etc/pki/"],
                   check=True)
    for directory in ("dogtag", "systemd/pki-tomcatd.target.wants", "ipabuild-client"):
        (Path("/etc/pki") / directory).mkdir(parents=True, exist_ok=True)
    try:
        socket.getaddrinfo(ca_hostname, 8443)
    except OSError:
        try:
            with open("/etc/hosts", "a", encoding="utf-8") as hosts:
                hosts.write(f"127.0.0.1 {ca_hostname}\n")
        except OSError as exc:
            raise InitError(f"pkispawn must reach the CA as https://{ca_hostname}:8443 but "
                            f"{ca_hostname} does not resolve (podman: --hostname "
                            f"{ca_hostname})") from exc
        log(f"{ca_hostname} did not resolve; added it to /etc/hosts for pkispawn")


def run_pkispawn(values: dict[str, str]) -> None:
    """pkispawn with its configuration in a 0600 file on tmpfs, deleted afterwards."""
    handle, cfg = tempfile.mkstemp(prefix="pkispawn.", suffix=".cfg", dir="/tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(render_cfg(CFG_TEMPLATE.read_text(encoding="utf-8"), values))
        log(f"running pkispawn for CA instance '{INSTANCE}' (database {values['BASE_DN']} "
            f"on {values['LDAP_HOST']}:{values['LDAP_PORT']}); this takes about a minute")
        started = time.monotonic()
        # -v: each step in the log with its time (no secret is logged at this level),
        # so a slow or failing step shows in `podman logs` and in `ipabuild up`'s error.
        failed = subprocess.run(["pkispawn", "-v", "-s", "CA", "-f", cfg],
                                stdout=sys.stderr, check=False).returncode != 0
    finally:
        os.unlink(cfg)
    if failed:
        if TOMCAT_LOG.exists():
            sys.stderr.writelines(TOMCAT_LOG.read_text(errors="replace").splitlines(True)[-50:])
        subprocess.run([SYSTEMCTL, "stop", UNIT], check=False)
        raise InitError("pkispawn failed; its log is under /var/log/pki (pki-ca-spawn.*.log)")
    subprocess.run([SYSTEMCTL, "stop", UNIT], check=True)
    log(f"pkispawn finished in {time.monotonic() - started:.0f}s")


def hand_over_to_group_zero() -> None:
    """Later runs are non-root under any UID with GID 0: group 0 gets the owner's
    rights on what this init made (pkispawn makes its NSS databases and keys 0600; the
    volume roots may belong to someone else and stay as they are; links are skipped:
    the instance's links into /usr/share stay untouched); the marker last."""
    volumes = list(map(str, VOLUMES))
    uid = str(os.getuid())
    subprocess.run(["find", *volumes, "-xdev", "-user", uid, "!", "-type", "l",
                    "!", "-group", "0", "-exec", "chgrp", "0", "{}", "+"], check=True)
    subprocess.run(["find", *volumes, "-xdev", "-user", uid, "!", "-type", "l",
                    "-exec", "chmod", "g=u", "{}", "+"], check=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    MARKER.write_text(stamp + "\n", encoding="utf-8")
    MARKER.chmod(0o660)


def init() -> None:
    if os.geteuid() == 0 or os.getegid() != 0:
        raise InitError(f"init runs as the CA's own non-root UID with GID 0 (it runs as UID "
                        f"{os.geteuid()} GID {os.getegid()}): the instance then belongs to "
                        f"that UID and group 0, which the CA runs as (podman: --user "
                        f"UID:0; Kubernetes: runAsGroup 0 or OpenShift's restricted SCC)")
    try:
        pki_user = pwd.getpwuid(os.getuid()).pw_name
    except KeyError as exc:
        raise InitError(f"UID {os.getuid()} has no passwd entry, which pkispawn needs: run "
                        f"through the image's entrypoint (`ipabuild-ca init`), which "
                        f"provides one") from exc
    os.umask(0o007)
    if initialised():
        log(f"CA instance '{INSTANCE}' already initialised ({MARKER}); nothing to do")
        return
    remove_interrupted_init()
    env = os.environ
    ldap_host, ldap_port = env.get("CA_LDAP_HOST", "ldap"), env.get("CA_LDAP_PORT", "3389")
    ca_hostname = env.get("CA_HOSTNAME", "ca")
    admin = secret("ca-admin-password")
    if (SECRETS_DIR / "ca-pkcs12-password").exists():
        p12 = secret("ca-pkcs12-password")
    else:
        log("no secret ca-pkcs12-password: the admin's PKCS#12 uses the CA admin password")
        p12 = admin
    values = {"CA_HOSTNAME": ca_hostname, "LDAP_HOST": ldap_host, "LDAP_PORT": ldap_port,
              "BASE_DN": env.get("CA_LDAP_BASE_DN", "o=ipaca"),
              "DM_PASSWORD": secret("ldap-dm-password"), "ADMIN_PASSWORD": admin,
              "PKCS12_PASSWORD": p12, "PKI_USER": pki_user}
    base_dn = values["BASE_DN"]
    wait_tcp(ldap_host, int(ldap_port), f"the CA's database {base_dn} lives in the ldap service")
    # pkispawn adds the CA admin with a password, and IPA's password plugin in ldap
    # (ipa-pwd-extop) refuses any password until the realm's master key exists: the kdc
    # creates it first thing on a fresh stack. (Upstream installs the CA before the plugin.)
    wait_master_key(f"ldap://{ldap_host}:{ldap_port}", values["DM_PASSWORD"],
                    env.get("IPA_REALM", ""), env.get("IPA_SUFFIX", ""))
    found = database_exists(f"ldap://{ldap_host}:{ldap_port}", values["DM_PASSWORD"], base_dn)
    values["DS_REMOVE_DATA"] = str(found)
    if found:
        log(f"the directory holds {base_dn} from an earlier init: pkispawn replaces it")
    prepare_volumes(ca_hostname)
    run_pkispawn(values)
    hand_over_to_group_zero()
    log(f"CA instance '{INSTANCE}' initialised; start the CA non-root (mode run)")


def main() -> int:
    try:
        init()
    except (InitError, OSError, subprocess.CalledProcessError) as exc:
        log(f"FATAL: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
