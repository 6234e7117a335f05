"""The monolith's service trees and namespaces: where each service's files come from,
and how a process enters a service's tree or joins a running one.

Each service is its split image's own tree, copied whole under ``/srv/<service>`` at
build time; the builder writes what is needed of each spec to
``/usr/share/ipabuild/monolith.json`` (``load``). A service runs in a mount namespace of
its own (a nested user namespace that maps the container's IDs one to one, because
mounting needs CAP_SYS_ADMIN, which the container never has): ``enter`` binds the
container's /dev, /proc, /sys and name files, the service's volumes (subdirectories of
the one /data volume), fresh tmpfs directories and a copy of its secrets into the tree,
chroots there and becomes upstream's user for those daemons; ``join`` runs a command in
a running service's namespaces (setns). The supervisor (supervisor.py) decides when.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

CONFIG = Path("/usr/share/ipabuild/monolith.json")
STATE = Path("/data")
RUNTIME = Path("/run/ipabuild-monolith")
# The container's own files every tree sees: devices, processes, and the names podman
# writes (the stack's hosts, DNS).
SHARED_DIRS = ("/dev", "/proc", "/sys")
SHARED_FILES = ("/etc/hosts", "/etc/resolv.conf", "/etc/hostname")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MS_BIND, MS_REC = 0x1000, 0x4000
CLONE_NEWNS, CLONE_NEWUSER = 0x00020000, 0x10000000


def log(message: str) -> None:
    print(f"ipabuild-monolith: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Bind:
    """One mount into a tree: ``source`` (in the container) on ``target`` (in the tree)."""

    source: str
    target: str
    is_file: bool = False


@dataclass
class Part:
    """One split service as the monolith runs it (one entry of monolith.json)."""

    name: str
    root: str
    user: str
    upstream: str
    command: list[str]
    init: list[str]
    environment: dict[str, str]
    healthcheck: list[str]
    start_period: int
    depends_on: dict[str, str]
    volumes: list[dict]
    shared_volumes: list[dict]
    tmpfs: list[str]
    secrets: list[dict]
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def runtime(self) -> Path:
        return RUNTIME / self.name

    @property
    def pid_file(self) -> Path:
        return RUNTIME / f"{self.name}.pid"

    def ids(self) -> tuple[int, int]:
        """(UID, GID) to run as: the user's UID in this service's tree, group 0, as every
        split image runs (any UID with GID 0)."""
        if self.user == "root":
            return 0, 0
        passwd = Path(self.root, "etc/passwd")
        for line in passwd.read_text().splitlines():
            fields = line.split(":")
            if len(fields) > 2 and fields[0] == self.user:
                return int(fields[2]), 0
        raise SystemExit(f"ipabuild-monolith: {self.name}: no user {self.user!r} in {passwd}"
                         " (fix `runs` in services/monolithic/service.yaml)")


def load(path: Path = CONFIG) -> list[Part]:
    return [Part(**entry) for entry in json.loads(path.read_text())["services"]]


def volume_source(parts: list[Part], service: str, volume: str) -> Path:
    """Where a service's volume lives in the container: state under /data/<service>/,
    an ephemeral one (a socket's directory) on the runtime tmpfs."""
    part = next(p for p in parts if p.name == service)
    spec = next(v for v in part.volumes if v["name"] == volume)
    return (RUNTIME / service / "volumes" if spec["ephemeral"] else STATE / service) / volume


def tmpfs_source(part: Part, path: str) -> Path:
    return part.runtime / "tmpfs" / path.strip("/").replace("/", "%")


def secrets_source(part: Part, directory: str) -> Path:
    return part.runtime / "secrets" / directory.strip("/").replace("/", "%")


def binds(parts: list[Part], part: Part) -> list[Bind]:
    """Every mount into ``part``'s tree, parents before what they hold."""
    found = [Bind(d, d) for d in SHARED_DIRS] + [Bind(f, f, is_file=True) for f in SHARED_FILES]
    found += [Bind(str(tmpfs_source(part, t)), t) for t in part.tmpfs]
    found += [Bind(str(volume_source(parts, part.name, v["name"])), v["path"])
              for v in part.volumes]
    found += [Bind(str(volume_source(parts, v["service"], v["volume"])), v["path"])
              for v in part.shared_volumes]
    found += [Bind(str(secrets_source(part, d)), d)
              for d in sorted({os.path.dirname(s["path"]) for s in part.secrets})]
    return sorted(found, key=lambda b: b.target.count("/") - (b.target in SHARED_DIRS))


def under_tmpfs(part: Part, target: str) -> bool:
    return any(target.startswith(t.rstrip("/") + "/") for t in part.tmpfs)


def make_mountpoints(parts: list[Part]) -> list[str]:
    """At build time: the mount points a tree lacks (those under a tmpfs are made at each
    start, on the fresh directory). Returns what was created."""
    made = []
    for part in parts:
        for bind in binds(parts, part):
            if under_tmpfs(part, bind.target):
                continue
            target = Path(part.root + bind.target)
            if target.exists() or target.is_symlink():
                continue
            if bind.is_file:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.touch()
            else:
                target.mkdir(parents=True)
            made.append(str(target))
    return made


def prepare(parts: list[Part]) -> None:
    """Before any start: volumes (made once, owned by their service's user), fresh tmpfs
    directories, and each service's own secrets copied readable by its user only."""
    if RUNTIME.exists():
        shutil.rmtree(RUNTIME)
    for part in parts:
        uid, gid = part.ids()
        for volume in part.volumes:
            source = volume_source(parts, part.name, volume["name"])
            if not source.exists():
                source.mkdir(parents=True, mode=0o770)
                os.chown(source, uid, gid)
        for path in part.tmpfs:
            source = tmpfs_source(part, path)
            source.mkdir(parents=True)
            source.chmod(0o1777)
        for secret in part.secrets:
            directory = secrets_source(part, os.path.dirname(secret["path"]))
            directory.mkdir(parents=True, exist_ok=True, mode=0o750)
            os.chown(directory, uid, gid)
            given = Path("/run/secrets", secret["name"])
            if not given.is_file():
                continue  # an optional secret: the service's own start says if it needs it
            copy = directory / os.path.basename(secret["path"])
            shutil.copyfile(given, copy)
            os.chown(copy, uid, gid)
            copy.chmod(0o440)


def identity_map_size() -> int:
    """How many IDs, from 0, this container's user namespace maps: the nested one maps
    the same, one to one."""
    for line in Path("/proc/self/uid_map").read_text().splitlines():
        inside, _outside, count = (int(x) for x in line.split())
        if inside == 0:
            return count
    raise SystemExit("ipabuild-monolith: UID 0 is not mapped in this container")


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def mount_bind(source: str, target: str) -> None:
    if _libc().mount(source.encode(), target.encode(), None, MS_BIND | MS_REC, None) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"bind {source} on {target}: {os.strerror(error)}")


def part_environment(part: Part, container: dict[str, str]) -> dict[str, str]:
    """A service's environment: its image's (from its spec), then what the container was
    given at run time that concerns it (``ipabuild up --env``, a pod's env): overrides of
    its declared settings and the project's own ``IPABUILD_*`` knobs, as its split
    container would get them."""
    given = {k: v for k, v in container.items()
             if k.startswith("IPABUILD_") or k in part.environment}
    return {"PATH": PATH, "HOME": "/tmp", **part.environment, **given}


def enter(parts: list[Part], name: str, argv: list[str]) -> None:
    """In the new namespaces: bind everything into the tree, chroot, become the service's
    user and exec ``argv`` with the service's image environment."""
    part = next(p for p in parts if p.name == name)
    uid, gid = part.ids()
    for bind in binds(parts, part):
        target = Path(part.root + bind.target)
        if not (target.exists() or target.is_symlink()):
            if bind.is_file:
                target.touch()
            else:
                target.mkdir(parents=True)
        mount_bind(bind.source, str(target))
    os.chroot(part.root)
    os.chdir("/")
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    os.execvpe(argv[0], argv, part_environment(part, dict(os.environ)))


def join(parts: list[Part], name: str, argv: list[str]) -> None:
    """Join ``name``'s running namespaces and tree, then exec ``argv`` as its user."""
    part = next(p for p in parts if p.name == name)
    uid, gid = part.ids()
    pid = int(part.pid_file.read_text())
    root = os.open(f"/proc/{pid}/root", os.O_RDONLY)
    for kind, flag in (("user", CLONE_NEWUSER), ("mnt", CLONE_NEWNS)):
        handle = os.open(f"/proc/{pid}/ns/{kind}", os.O_RDONLY)
        os.setns(handle, flag)
        os.close(handle)
    os.fchdir(root)
    os.chroot(".")
    os.chdir("/")
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    os.execvpe(argv[0], argv, part_environment(part, dict(os.environ)))
