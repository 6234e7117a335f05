"""IPA's directory in the ldap container: FreeIPA's own installer steps, without its
assumptions of root, systemd and one host.

``ipa_directory.py init`` turns the freshly created, empty 389-ds instance into an IPA
directory exactly as ``ipa-server-install`` does (``DsInstance.create_instance``: IPA's
schema, plugins, indices and the tree from FreeIPA's LDIF templates; the Kerberos
container, default ACIs and ipa-pwd-extop's configuration from ``KrbInstance``; then
every update file through ``ipaserver.install.ldapupdate``). FreeIPA's step driver runs
the steps and prints its ``[n/N]: step`` lines; only the steps that manage systemd or
create the instance are replaced (``REPLACED_STEPS``), each with its reason.

``ipa_directory.py upgrade`` runs when the volume was initialised by another framework
version: the new schema files, then every update file again (they are idempotent).

Both talk to the directory over LDAPI with SASL EXTERNAL, as FreeIPA does: this process
runs with ns-slapd's UID and GID 0, which 389-ds maps to Directory Manager.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

REALM = os.environ["IPA_REALM"]
DOMAIN = os.environ["IPA_DOMAIN"]
# The name FreeIPA's templates use for "this server": the directory's own host name.
FQDN = os.environ.get("IPA_SERVER", f"ipa.{DOMAIN}")  # the server name: the master
SERVERID = "-".join(REALM.split("."))
CONFIG_DIR = Path(f"/etc/dirsrv/slapd-{SERVERID}")
RUN_DIR = Path("/data/run")
PID_FILE = RUN_DIR / f"slapd-{SERVERID}.pid"
VERSION_FILE = Path("/data/.ipabuild-framework-version")
SECRETS = Path(os.environ.get("IPABUILD_SECRETS_DIR", "/run/secrets"))
START_TIMEOUT = 120

# FreeIPA's step (by its message) -> (replacement method name or None to skip, reason).
REPLACED_STEPS: dict[str, tuple[str | None, str]] = {
    "creating directory server instance": (
        "open_created_instance",
        "dscreate already made the instance with every path on /data (FreeIPA's would "
        "write under /var/lib and /etc and register systemd units); this creates the "
        "suffix entry FreeIPA's step creates"),
    "adding default schema": (
        "add_default_schemas",
        "FreeIPA's step also chowns each file to the dirsrv user; here ns-slapd runs as "
        "this very UID, so the same files are copied with the same mode and no chown"),
    "configure dirsrv ccache and keytab": (
        None, "writes a systemd drop-in; the container's environment sets KRB5_KTNAME"),
    "configuring directory to start on boot": (
        None, "systemd enablement; the container runtime starts ns-slapd"),
}
# FreeIPA update plugins (ipaserver/install/plugins) skipped here, with the reason.
SKIPPED_UPDATE_PLUGINS: dict[str, str] = {
    "update_dna_shared_config": (
        "sets how replicas ask each other for DNA ID ranges; it waits 60 s for the "
        "shared-config entries of a server restart with listeners off, which this "
        "single-directory stack never has"),
    "update_upload_cacrt": (
        "uploads the CA certificates of 389-ds's own NSS database into IPA's certificate "
        "store as trusted; in the split stack that database holds no CA certificate when "
        "the updates run (the IPA CA runs only after the directory): the ca service "
        "publishes the IPA CA's certificate into cn=CAcert (made by "
        "19-ipabuild-ca-certificate.update)"),
}
# KrbInstance's directory steps (krbinstance.py), run here because they are LDIF only.
KERBEROS_LDIFS = ("kerberos.ldif", "default-aci.ldif", "pwd-extop-conf.ldif")


def log(message: str) -> None:
    print(f"ipa_directory: {message}", file=sys.stderr, flush=True)


def secret(name: str) -> str:
    path = SECRETS / name
    try:
        value = path.read_text().strip()
    except OSError as exc:
        raise SystemExit(f"ipa_directory: secret {name!r} missing at {path}: {exc}") from exc
    if not value:
        raise SystemExit(f"ipa_directory: secret {name!r} at {path} is empty")
    return value


def framework_version() -> str:
    """FreeIPA's version plus a digest of the update files: a newer image whose update
    set differs in any way (FreeIPA's or ipabuild's own) re-applies them on an old volume."""
    from ipaplatform.paths import paths
    from ipapython.version import VERSION

    digest = hashlib.sha256()
    for name in sorted(glob.glob(os.path.join(paths.UPDATES_DIR, "*.update"))):
        digest.update(os.path.basename(name).encode() + b"\0" + Path(name).read_bytes())
    return f"{VERSION}+updates.{digest.hexdigest()[:12]}"


# --- ns-slapd while initialising --------------------------------------------------------


class Slapd:
    """ns-slapd started and stopped directly (FreeIPA would ask systemd)."""

    def start(self) -> None:
        if self._answers():
            return
        RUN_DIR.joinpath("lock").mkdir(parents=True, exist_ok=True)
        subprocess.run(["/usr/sbin/ns-slapd", "-D", str(CONFIG_DIR), "-i", str(PID_FILE)],
                       check=True)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._answers():
                return
            time.sleep(0.3)
        raise RuntimeError(f"ns-slapd did not answer on LDAPI within {START_TIMEOUT}s")

    def stop(self) -> None:
        try:
            pid = int(PID_FILE.read_text().strip())
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        while Path(f"/proc/{pid}").exists():
            time.sleep(0.2)

    @staticmethod
    def _answers() -> bool:
        from ipapython import ipaldap

        try:
            with ipaldap.LDAPClient.from_realm(REALM) as conn:
                conn.external_bind()
                conn.get_entry(ipaldap.DN(("cn", "config")), ["cn"])
            return True
        except Exception:
            return False


SLAPD = Slapd()


def bootstrap_api() -> None:
    """FreeIPA's API as the installer uses it, pointed at this instance's LDAPI."""
    from ipalib import api

    if api.isdone("finalize"):
        return
    # /etc/ipa/default.conf (from the image) names realm, domain, basedn, host, LDAPI.
    api.bootstrap(in_server=True, context="installer", confdir="/etc/ipa", in_tree=False,
                  debug=False)
    api.finalize()


def split_ds_instance():  # type: ignore[no-untyped-def]
    """FreeIPA's DsInstance with the container's process control and step replacements."""
    from ipalib import api
    from ipaserver.install import dsinstance

    class SplitDsInstance(dsinstance.DsInstance):
        def step(self, message, method, run_after_failure=False):  # type: ignore[no-untyped-def]
            replacement, reason = REPLACED_STEPS.get(message, ("", ""))
            if replacement is None:
                log(f"skipping FreeIPA step '{message}': {reason}")
                return
            if replacement:
                method = getattr(self, replacement)
            super().step(message, method, run_after_failure)

        def start(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            SLAPD.start()
            api.Backend.ldap2.connect()

        def stop(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            if api.Backend.ldap2.isconnected():
                api.Backend.ldap2.disconnect()
            SLAPD.stop()

        def restart(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            self.stop()
            self.start()

        def add_default_schemas(self) -> None:
            install_schema_files()

        def open_created_instance(self) -> None:
            from ipapython import ipaldap
            from ipaserver.install import installutils
            from lib389 import DirSrv
            from lib389.idm.ipadomain import IpaDomain

            SLAPD.start()
            inst = DirSrv(verbose=False)
            inst.local_simple_allocate(serverid=self.serverid,
                                       ldapuri=ipaldap.realm_to_ldapi_uri(self.realm))
            inst.open(saslmethod="EXTERNAL")
            try:
                self.sub_dict["REPLICATION_PLUGIN"] = installutils.get_replication_plugin_name(
                    lambda dn, attrs: inst.getEntry(str(dn), attrlist=attrs))
                import ldap

                # dscreate leaves a plain, empty suffix entry: IPA's shape replaces it.
                with contextlib.suppress(ldap.NO_SUCH_OBJECT):
                    inst.delete_s(self.suffix.ldap_text())
                IpaDomain(inst, dn=self.suffix.ldap_text()).create(properties={
                    "dc": self.realm.split(".")[0].lower(), "info": "IPA V2.0"})
            finally:
                inst.close()
            api.Backend.ldap2.connect()

    return SplitDsInstance


def install_schema_files() -> None:
    """IPA's schema files into the instance (DsInstance.__add_default_schemas, no chown)."""
    from ipaserver.install import dsinstance

    for name in (*dsinstance.IPA_SCHEMA_FILES, "05rfc2247.ldif"):
        target = CONFIG_DIR / "schema" / name
        if target.exists() and name == "05rfc2247.ldif":
            target.replace(target.with_name(name + ".old"))
        staged = target.with_name(f".{name}.new")
        staged.write_bytes(Path("/usr/share/ipa", name).read_bytes())
        staged.chmod(0o440)
        staged.replace(target)  # the old copy is 0440: replaced, not rewritten


def apply_updates() -> None:
    """Every FreeIPA update file, in FreeIPA's order (idempotent by design)."""
    from ipalib import api
    from ipaplatform.paths import paths
    from ipaserver.install import ldapupdate

    class SplitLDAPUpdate(ldapupdate.LDAPUpdate):
        def _run_update_plugin(self, plugin_name):  # type: ignore[no-untyped-def]
            if plugin_name in SKIPPED_UPDATE_PLUGINS:
                log(f"skipping update plugin {plugin_name}: "
                    f"{SKIPPED_UPDATE_PLUGINS[plugin_name]}")
                return
            started = time.monotonic()
            super()._run_update_plugin(plugin_name)
            log(f"update plugin {plugin_name}: {time.monotonic() - started:.1f}s")

        def restart_ds(self):  # type: ignore[no-untyped-def]
            SLAPD.stop()  # FreeIPA asks systemd; here ns-slapd is this process's child
            SLAPD.start()

    files = sorted(glob.glob(os.path.join(paths.UPDATES_DIR, "*.update")))
    log(f"applying {len(files)} update files from {paths.UPDATES_DIR}")
    started = time.monotonic()
    SplitLDAPUpdate(api=api).update(files)
    log(f"update files applied in {time.monotonic() - started:.1f}s")


def init() -> None:
    """First start: the whole of ipa-server-install's directory part."""
    from ipalib import constants
    from ipapython.dn import DN

    bootstrap_api()
    instance_class = split_ds_instance()
    ds = instance_class(realm_name=REALM, domainlevel=constants.MAX_DOMAIN_LEVEL)
    # ipa-server-install's default ID range: a random start, 200000 IDs.
    idstart = random.randint(1, 10000) * 200000
    subject_base = DN(("O", REALM))
    ds.create_instance(REALM, FQDN, DOMAIN, secret("ldap-dm-password"),
                       idstart=idstart, idmax=idstart + 199999, subject_base=subject_base,
                       ca_subject=DN(("CN", "Certificate Authority"), subject_base))
    # create_instance ends with ns-slapd restarted and ldap2 connected.
    for ldif in KERBEROS_LDIFS:
        log(f"KrbInstance: {ldif}")
        ds._ldap_mod(ldif, ds.sub_dict)
    apply_updates()
    ds.stop()
    VERSION_FILE.write_text(framework_version() + "\n")
    log(f"IPA directory for {REALM} initialised (framework {framework_version()})")


@contextlib.contextmanager
def listeners_off() -> Iterator[None]:
    """No LDAP or LDAPS listener while the updates run, only LDAPI: what FreeIPA's own
    upgrade does (upgradeinstance.py, ``__disable_listeners``/``__restore_config``, with
    its ``ModifyLDIF``). Otherwise clients (the CA's Dogtag, starting beside ldap) connect
    to the updating instance, then lose it when it stops for the final start. Edits
    dse.ldif while ns-slapd is stopped."""
    from ipaserver.install.installutils import ModifyLDIF

    dse = CONFIG_DIR / "dse.ldif"
    saved = {name: value for line in dse.read_text().splitlines()
             for name, _, value in [line.partition(": ")]
             if name in ("nsslapd-port", "nsslapd-security")}

    def rewrite(values: dict[str, str]) -> None:
        edited = dse.with_suffix(".ipabuild-upgrade")
        with dse.open() as source, edited.open("w") as target:
            parser = ModifyLDIF(source, target)
            for name, value in values.items():
                parser.replace_value("cn=config", name, [value.encode()])
            parser.parse()
        edited.replace(dse)

    rewrite({"nsslapd-port": "0", "nsslapd-security": "off"})
    try:
        yield
    finally:
        rewrite(saved)


def upgrade() -> None:
    """An existing volume under a newer framework: new schema, then the update files."""
    old = VERSION_FILE.read_text().strip() if VERSION_FILE.exists() else "unknown"
    log(f"upgrading the IPA directory from framework {old} to {framework_version()}")
    install_schema_files()
    bootstrap_api()
    with listeners_off():
        SLAPD.start()
        try:
            apply_updates()
        finally:
            SLAPD.stop()
    VERSION_FILE.write_text(framework_version() + "\n")


def needs_upgrade() -> bool:
    """True when the volume was initialised by another (or an unrecorded) framework
    version: the updates then run again rather than the start failing on a missing file."""
    if not VERSION_FILE.exists():
        return True
    return VERSION_FILE.read_text().strip() != framework_version()


def main(argv: list[str]) -> int:
    from ipapython.ipa_log_manager import standard_logging_setup

    standard_logging_setup(None, verbose=False, debug=False, console_format="%(message)s")
    command = argv[1] if len(argv) > 1 else ""
    if command == "init":
        init()
    elif command == "upgrade":
        if needs_upgrade():
            upgrade()
        else:
            log(f"directory already at framework {framework_version()}")
    else:
        print("usage: ipa_directory.py init|upgrade", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
