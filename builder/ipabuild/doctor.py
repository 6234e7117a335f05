"""``ipabuild doctor``: is this host able to build and run ipabuild's containers?

Each check says what it found, whether that blocks ipabuild, and the fix. ``--fix``
applies the fixes that are safe to automate: installing Debian packages, a
containers.conf drop-in (runc runtime, ulimits the host allows) and the
``containers`` sub-ID ranges that ``--userns=auto`` needs.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.table import Table

from ipabuild.core.commands import run, which
from ipabuild.core.tables import new_table

# Executable -> Debian package that provides it.
TOOLS: dict[str, str] = {
    "buildah": "buildah",
    "podman": "podman",
    "runc": "runc",
    "mmdebstrap": "mmdebstrap",
    "newuidmap": "uidmap",
    "fuse-overlayfs": "fuse-overlayfs",
    "slirp4netns": "slirp4netns",
    "iptables": "iptables",  # netavark sets up container networks with it
}
HELPERS: dict[str, str] = {
    "/usr/lib/podman/netavark": "netavark",
    "/usr/lib/podman/aardvark-dns": "aardvark-dns",
    "/usr/libexec/podman/catatonit": "catatonit",  # --init: reaps the CA's zombies
}
CONF_DROPIN = Path("/etc/containers/containers.conf.d/50-ipabuild.conf")
SUBID_FILES = (Path("/etc/subuid"), Path("/etc/subgid"))
# The upper half of the 32-bit ID space: far from any host user, as HOST.md suggests.
SUBID_RANGE = "containers:2147483647:2147483648"
NPROC_LIMIT = 4096
NOFILE_CAP = 65536


@dataclass
class Check:
    """One finding of the doctor."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True
    fixed: bool = False

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def _missing_packages() -> list[str]:
    missing = [pkg for tool, pkg in TOOLS.items() if which(tool) is None]
    missing += [pkg for path, pkg in HELPERS.items() if not Path(path).exists()]
    return sorted(set(missing))


def check_tools(fix: bool) -> Check:
    missing = _missing_packages()
    fixed = False
    if missing and fix and os.geteuid() == 0 and which("apt-get"):
        os.environ["DEBIAN_FRONTEND"] = "noninteractive"
        run(["apt-get", "update", "-q"], step="apt-get update")
        run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
            step="apt-get install")
        fixed, missing = True, _missing_packages()
    return Check(
        "build and run tools", not missing,
        "all present" if not missing else "missing packages: " + " ".join(missing),
        "" if not missing else "apt-get install --no-install-recommends " + " ".join(missing),
        fixed=fixed,
    )


def desired_ulimits() -> dict[str, str]:
    """Limits podman may set here: at or below the host's hard limits (no CAP_SYS_RESOURCE)."""
    _, hard_files = resource.getrlimit(resource.RLIMIT_NOFILE)
    _, hard_procs = resource.getrlimit(resource.RLIMIT_NPROC)
    files = min(NOFILE_CAP, hard_files if hard_files != resource.RLIM_INFINITY else NOFILE_CAP)
    procs = min(NPROC_LIMIT, hard_procs if hard_procs != resource.RLIM_INFINITY else NPROC_LIMIT)
    return {"nofile": f"{files}:{files}", "nproc": f"{procs}:{procs}"}


def dropin_text() -> str:
    limits = ", ".join(f'"{k}={v}"' for k, v in desired_ulimits().items())
    return (
        "# Written by `ipabuild doctor --fix`.\n"
        "# runc: crun fails on hosts with hybrid cgroups. Ulimits: podman's defaults exceed\n"
        "# the hard limits of hosts without CAP_SYS_RESOURCE and every container fails.\n"
        "[containers]\n"
        f"default_ulimits = [{limits}]\n\n"
        "[engine]\n"
        'runtime = "runc"\n'
    )


def check_containers_conf(fix: bool) -> Check:
    wanted = dropin_text()
    current = CONF_DROPIN.read_text() if CONF_DROPIN.exists() else ""
    fixed = False
    if current != wanted and fix:
        CONF_DROPIN.parent.mkdir(parents=True, exist_ok=True)
        CONF_DROPIN.write_text(wanted)
        current, fixed = wanted, True
    ok = current == wanted
    return Check(
        "containers.conf (runtime, ulimits)", ok,
        f"{CONF_DROPIN} sets runc and {desired_ulimits()}" if ok
        else f"{CONF_DROPIN} missing or out of date",
        "" if ok else "ipabuild doctor --fix (writes the drop-in)", fixed=fixed,
    )


def _has_containers_range(path: Path) -> bool:
    if not path.exists():
        return False
    return any(line.split(":")[0] == "containers" for line in path.read_text().splitlines())


def check_subids(fix: bool) -> Check:
    missing = [p for p in SUBID_FILES if not _has_containers_range(p)]
    fixed = False
    if missing and fix:
        for path in missing:
            existing = path.read_text() if path.exists() else ""
            sep = "" if not existing or existing.endswith("\n") else "\n"
            path.write_text(existing + sep + SUBID_RANGE + "\n")
        missing, fixed = [], True
    return Check(
        "sub-ID ranges for user namespaces", not missing,
        "`containers` range in /etc/subuid and /etc/subgid" if not missing
        else "no `containers` entry in " + ", ".join(str(p) for p in missing),
        "" if not missing else f"add `{SUBID_RANGE}` to /etc/subuid and /etc/subgid",
        fixed=fixed,
    )


def check_runtime(_fix: bool) -> Check:
    if which("podman") is None:
        return Check("OCI runtime", False, "podman is not installed", "install podman first")
    result = run(["podman", "info", "--format", "{{.Host.OCIRuntime.Name}}"], check=False)
    name = result.stdout.strip()
    if not result.succeeded:
        return Check("OCI runtime", False, f"podman info failed: {result.tail(2)}",
                     "ipabuild doctor --fix")
    if name != "runc":
        return Check("OCI runtime", False, f"podman uses {name or 'unknown'}",
                     'set runtime = "runc" (ipabuild doctor --fix)')
    # A real container start proves runtime, ulimits and storage together.
    images = run(["podman", "images", "-q", "--filter", "label=io.ipabuild.base"], check=False)
    image = images.stdout.split()[0] if images.stdout.split() else ""
    if not image:
        return Check("OCI runtime", True, "podman uses runc (no local base image yet to try a "
                     "container; `ipabuild images` makes one)")
    trial = run(["podman", "run", "--rm", "--network", "none", "--entrypoint", "/bin/true", image],
                check=False)
    return Check("OCI runtime", trial.succeeded,
                 "runc started a container" if trial.succeeded
                 else f"a trial container failed: {trial.tail(2)}",
                 "" if trial.succeeded else "ipabuild doctor --fix; then see the error above")


def check_cgroups(_fix: bool) -> Check:
    unified = Path("/sys/fs/cgroup/cgroup.controllers").exists()
    hybrid = Path("/sys/fs/cgroup/unified").exists()
    mode = "v2 (unified)" if unified else "hybrid" if hybrid else "v1"
    return Check("cgroups", True, f"cgroup {mode}; runc handles it", required=False)


def check_kustomize(_fix: bool) -> Check:
    found = [tool for tool in ("kubectl", "kustomize", "oc") if which(tool)]
    return Check(
        "kustomize (for manifests)", bool(found),
        "found: " + ", ".join(found) if found else "none of kubectl, kustomize, oc",
        "" if found else "install kubectl (kubectl kustomize) or kustomize",
        required=False,
    )


def check_systemd(_fix: bool) -> Check:
    present = Path("/run/systemd/system").exists()
    return Check(
        "systemd (podman healthcheck timers)", present,
        "running" if present else "not running: podman cannot schedule healthchecks; "
        "ipabuild runs `podman healthcheck run` itself", required=False,
    )


def check_secret_records(fix: bool) -> Check:
    from ipabuild.stack.secretrecords import broken_records, drop_records

    broken = broken_records()
    fixed = False
    if broken and fix:
        drop_records(list(broken))
        broken, fixed = broken_records(), True
    names = ", ".join(sorted(broken.values()))
    return Check(
        "podman secret records", not broken,
        "every secret has its data" if not broken else
        f"records without data (podman 4.3 after `podman system reset`): {names}; "
        "they can be neither removed nor created again",
        "" if not broken else "ipabuild doctor --fix (drops the dead records)", fixed=fixed,
    )


CHECKS: list[Callable[[bool], Check]] = [
    check_tools, check_containers_conf, check_subids, check_runtime, check_cgroups,
    check_kustomize, check_systemd, check_secret_records,
]


def run_checks(fix: bool) -> list[Check]:
    """Run every check in order (tools first: later checks need them)."""
    return [check(fix) for check in CHECKS]


def render_report(checks: list[Check]) -> Table:
    """One row per check; the detail and fix wrap, the status word stays whole."""
    table = new_table("ipabuild doctor", ("check", "status", "detail", "fix"),
                      whole=("status",))
    for c in checks:
        status = "fixed" if c.fixed else "ok" if c.ok else "FAIL" if c.required else "warn"
        style = {"ok": "green", "fixed": "cyan", "FAIL": "red", "warn": "yellow"}[status]
        table.add_row(c.name, status, c.detail, c.fix, style=style)
    return table
