"""Measure the blast radius (``ipabuild.proof.blastradius``) of the running containers.

Two steps, each on the side that can see the truth:

- **discovery, from the host** (root, through ``/proc/PID/root``): every private key,
  keytab, NSS key database, stash or PIN file on the container's volumes and tmpfs, and
  every LDAPI socket there. Found by name patterns and by the "PRIVATE KEY" marker in
  small files, never from a list of services' paths, so a key that appears anywhere on a
  volume is found. Host root sees files the daemons cannot, which is what a list of
  candidates needs.
- **the tries, from inside** (``podman exec --user UID:GID`` with the daemon's own IDs):
  open each secret and key for reading and for writing (an append-open that writes
  nothing), create and remove a directory on each volume, open a TCP connection to each
  service port of the specs, connect to each LDAPI socket (and ask 389-ds who it takes
  the peer for). The kernel answers, with the daemon's UID, GID, namespaces and mounts.

The secrets (paths) and ports come from the specs (``secrets:``, ``ports:``): services
are data, no service is named here.
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path

from ipabuild.core.commands import CommandResult, run
from ipabuild.core.errors import IpabuildError
from ipabuild.core.procfacts import decode_capabilities
from ipabuild.proof.blastradius import (
    CONNECT,
    KEY,
    NONE,
    PEER,
    READ,
    READ_WRITE,
    SECRET,
    SOCKET,
    VOLUME,
    WRITE,
    Column,
    Daemon,
    Matrix,
    Row,
)
from ipabuild.proof.targets import ContainerFacts
from ipabuild.proof.views import translate, view_of
from ipabuild.spec.model import Service

# What key material is called where FreeIPA's daemons keep it (PEM keys, keytabs, NSS
# databases of 389-ds and Dogtag, PKCS#12 bundles, the KDC's stash files, NSS PIN files,
# copies of passwords a start script leaves on tmpfs).
KEY_NAMES = ("*.key", "*-Key.pem", "*.keytab", "key4.db", "key3.db", "*.p12", "*.pfx",
             "*.jks", "*.keystore", ".k5.*", "stash", "*.stash", "pwdfile.txt", "pin.txt",
             "*password*")
KEY_MARKER = b"PRIVATE KEY"
MARKER_MAX_BYTES = 256 * 1024  # files larger than this are not opened for the marker
WALK_LIMIT = 100_000           # files looked at per container, at most
LDAPI_NAMES = ("*ldapi*", "slapd-*.socket")
# Kernel and runtime mounts that hold no daemon state.
NOT_STATE = ("/dev", "/proc", "/sys")
PROBE_TIMEOUT = 300.0
# Capabilities with which a chrooted process gets out of its root (chroot again, or
# unmount what its mount namespace lays over the container's files).
LEAVES_A_CHROOT = {"sys_chroot", "sys_admin"}

Runner = Callable[[Daemon, list[str]], CommandResult]

# The tries, run by /bin/sh inside the container as the daemon's UID:GID. Arguments come
# in pairs (kind, target); each answer is "result<TAB>index<TAB>cell<TAB>detail".
PROBE_SCRIPT = r"""
tcp_py='import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 2)'
unix_py='import socket, sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])'
# Why a path cannot be seen: not there, or a directory on the way is not searchable.
missing() { p=${1%/*}; while [ -n "$p" ] && [ ! -d "$p" ]; do p=${p%/*}; done
  if [ -x "${p:-/}" ]; then echo absent; else echo "not searchable"; fi; }
printf 'id\t%s:%s %s\n' "$(id -u)" "$(id -g)" "$(id -G)"
printf 'caps\t%s\n' "$(sed -n 's/^CapEff:[[:space:]]*//p' /proc/self/status)"
i=0
while [ "$#" -ge 2 ]; do
  kind=$1; target=$2; shift 2; r=; w=; c=; detail=
  case $kind in
  file)
    if [ -e "$target" ]; then
      head -c 1 -- "$target" >/dev/null 2>&1 && r=1
      (: >>"$target") 2>/dev/null && w=1
      [ -n "$r$w" ] || detail=denied
    else detail=$(missing "$target"); fi ;;
  dir)
    if [ -d "$target" ]; then
      ls -- "$target" >/dev/null 2>&1 && r=1
      d=$(mktemp -d "$target/.ipabuild-blast.XXXXXX" 2>/dev/null) && rmdir "$d" && w=1
    else detail=$(missing "$target"); fi ;;
  tcp)
    host=${target%:*}; port=${target##*:}
    if command -v bash >/dev/null 2>&1; then
      timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$host" "$port" 2>/dev/null && c=1
    elif command -v python3 >/dev/null 2>&1; then
      timeout 3 python3 -c "$tcp_py" "$host" "$port" 2>/dev/null && c=1
    else detail="no bash or python3 to try"; fi ;;
  unix)
    if [ -S "$target" ]; then
      if command -v python3 >/dev/null 2>&1; then
        python3 -c "$unix_py" "$target" 2>/dev/null && c=1
      else [ -w "$target" ] && c=1 && detail="access(W_OK)"; fi
      if [ -n "$c" ] && command -v ldapwhoami >/dev/null 2>&1; then
        uri="ldapi://$(printf %s "$target" | sed 's,/,%2F,g')"
        detail=$(timeout 5 ldapwhoami -Q -Y EXTERNAL -H "$uri" 2>&1 | head -n 1)
      fi
    else detail=$(missing "$target"); fi ;;
  ldapread)
    # What a bind over the socket (SASL EXTERNAL: who 389-ds takes this UID for) reads
    # of an attribute, in every naming context: counted, never printed.
    sock=${target%|*}; attr=${target##*|}
    if [ ! -S "$sock" ]; then detail=$(missing "$sock")
    elif ! command -v ldapsearch >/dev/null 2>&1; then detail="no ldapsearch to try"
    else
      uri="ldapi://$(printf %s "$sock" | sed 's,/,%2F,g')"; n=0
      for base in $(timeout 5 ldapsearch -LLL -Q -Y EXTERNAL -H "$uri" -s base -b "" \
          namingContexts 2>/dev/null | sed -n 's/^namingContexts: //p'); do
        m=$(timeout 30 ldapsearch -LLL -Q -Y EXTERNAL -o ldif-wrap=no -H "$uri" -b "$base" \
            "($attr=*)" "$attr" 2>/dev/null | grep -ci "^$attr::\{0,1\} ")
        n=$((n + ${m:-0}))
      done
      if [ "$n" -gt 0 ]; then r=1; detail="$n values"; else detail="none readable"; fi
    fi ;;
  esac
  cell=none
  if [ -n "$c" ]; then cell=connect
  elif [ -n "$r" ] && [ -n "$w" ]; then cell=read+write
  elif [ -n "$r" ]; then cell=read
  elif [ -n "$w" ]; then cell=write; fi
  printf 'result\t%s\t%s\t%s\n' "$i" "$cell" "$detail"
  i=$((i + 1))
done
"""
PROBE_KIND = {SECRET: "file", KEY: "file", VOLUME: "dir", PEER: "tcp", SOCKET: "unix"}
CELLS = {READ_WRITE, READ, WRITE, CONNECT, NONE}


def podman_exec(daemon: Daemon, args: list[str]) -> CommandResult:
    """Run the tries as the daemon's own UID:GID: in its container (``podman exec``), or,
    for a daemon with a view of its own, in its namespaces and root (``nsenter``, from the
    host: podman exec enters only the container's)."""
    if daemon.pid:
        argv = ["nsenter", "--target", str(daemon.pid), "--all", "--root", "--wd",
                "--setuid", str(daemon.uid), "--setgid", str(daemon.gid)]
    else:
        argv = ["podman", "exec", "--user", f"{daemon.uid}:{daemon.gid}", daemon.container]
    return run([*argv, "sh", "-c", PROBE_SCRIPT, "sh", *args], check=False,
               timeout=PROBE_TIMEOUT)


# ---- discovery, from the host --------------------------------------------------------

def tmpfs_mounts(pid: int) -> list[str]:
    """Mount points of tmpfs inside the container of ``pid`` (its /proc/PID/mountinfo)."""
    points = []
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        before, _, after = line.partition(" - ")
        point = before.split()[4].replace("\\040", " ")
        if after.split()[0] == "tmpfs" and not any(
                point == p or point.startswith(p + "/") for p in NOT_STATE):
            points.append(point)
    return sorted(set(points))


def _is_key(path: Path, mode: int, size: int) -> bool:
    if any(fnmatch.fnmatchcase(path.name, pattern) for pattern in KEY_NAMES):
        return True
    if not stat.S_ISREG(mode) or size > MARKER_MAX_BYTES:
        return False
    try:
        return KEY_MARKER in path.read_bytes()
    except OSError:
        return False


def discover(pid: int, mount_points: list[str],
             skip: set[str]) -> tuple[list[str], list[str]]:
    """Key files and LDAPI sockets under ``mount_points`` (container paths), walked as
    host root through ``/proc/PID/root``; symlinks are not followed (the file they name is
    found where it lives), hard links are counted once, ``skip`` paths are left out."""
    top = Path(f"/proc/{pid}/root")
    keys: list[str] = []
    sockets: list[str] = []
    seen: set[tuple[int, int]] = set()
    looked = 0
    for point in mount_points:
        for directory, dirs, files in os.walk(top / point.lstrip("/")):
            dirs.sort()
            for name in sorted(files):
                looked += 1
                if looked > WALK_LIMIT:
                    return keys, sockets
                path = Path(directory, name)
                inside = "/" + str(path.relative_to(top))
                try:
                    info = path.lstat()
                except OSError:
                    continue
                if stat.S_ISLNK(info.st_mode) or inside in skip or \
                        (info.st_dev, info.st_ino) in seen:
                    continue
                seen.add((info.st_dev, info.st_ino))
                if stat.S_ISSOCK(info.st_mode):
                    if any(fnmatch.fnmatchcase(name, p) for p in LDAPI_NAMES):
                        sockets.append(inside)
                elif _is_key(path, info.st_mode, info.st_size):
                    keys.append(inside)
    return keys, sockets


def _mount_of(path: str, mounts: list[str]) -> str:
    """The longest mount point that holds ``path``."""
    return max((m for m in mounts if path == m or path.startswith(m.rstrip("/") + "/")),
               key=len, default="/")


def _volume_owner(volume: str, containers: list[ContainerFacts], specs: dict[str, Service],
                  default: ContainerFacts) -> ContainerFacts:
    """The container whose spec declares ``volume`` among its own ``volumes`` (the others
    mount it as ``shared_volumes``); ``default`` when no spec says so."""
    for facts in containers:
        spec = specs.get(facts.service)
        if spec and facts.volumes.get(volume) in {v.path for v in spec.volumes}:
            return facts
    return default


def _found_columns(kind: str, found: dict[str, list[str]], containers: list[ContainerFacts],
                   specs: dict[str, Service]) -> list[Column]:
    """Columns of found files: one per volume file (seen by every container that mounts
    the volume, at its own mount point) or per tmpfs file (only its own container)."""
    columns: dict[str, Column] = {}
    for facts in containers:
        volume_of = {dest: name for name, dest in facts.volumes.items()}
        mounts = [*volume_of, *tmpfs_mounts(facts.init_pid)]
        for path in found.get(facts.name, []):
            mount = _mount_of(path, mounts)
            if mount in volume_of:
                volume, rel = volume_of[mount], os.path.relpath(path, mount)
                column_id = f"{kind}:{volume}:{rel}"
                if column_id not in columns:
                    owner = _volume_owner(volume, containers, specs, facts)
                    where = os.path.normpath(os.path.join(owner.volumes[volume], rel))
                    columns[column_id] = Column(kind, column_id, f"{owner.service}:{where}",
                                                owner=owner.service)
                for other in containers:
                    if volume in other.volumes:
                        where = os.path.normpath(os.path.join(other.volumes[volume], rel))
                        columns[column_id].locations[other.name] = where
            else:
                column_id = f"{kind}:{facts.name}:{path}"
                columns[column_id] = Column(kind, column_id, f"{facts.service}:{path}",
                                            {facts.name: path}, owner=facts.service)
    return sorted(columns.values(), key=lambda c: c.label)


def columns_for(containers: list[ContainerFacts], specs: dict[str, Service]) -> list[Column]:
    """Every column of one mode's matrix: the specs' secrets and ports, the volumes, and
    the keys and LDAPI sockets discovered on the containers."""
    running = [specs[c.service] for c in containers if c.service in specs]
    secrets: dict[str, Column] = {}
    for spec in running:
        for secret in spec.secrets:
            secrets.setdefault(secret.name, Column(SECRET, f"secret:{secret.name}",
                                                   secret.name))
    for column in secrets.values():
        name = column.label
        default = next(s.path for spec in running for s in spec.secrets if s.name == name)
        for facts in containers:
            own = specs.get(facts.service)
            path = next((s.path for s in own.secrets if s.name == name), default) \
                if own else default
            column.locations[facts.name] = path
    skip = {s.path for spec in running for s in spec.secrets}
    keys: dict[str, list[str]] = {}
    sockets: dict[str, list[str]] = {}
    for facts in containers:
        points = sorted({*facts.volumes.values(), *tmpfs_mounts(facts.init_pid)})
        keys[facts.name], sockets[facts.name] = discover(facts.init_pid, points, skip)
    volumes: dict[str, Column] = {}
    for facts in containers:
        for name, dest in sorted(facts.volumes.items()):
            if name not in volumes:
                owner = _volume_owner(name, containers, specs, facts)
                volumes[name] = Column(VOLUME, f"volume:{name}",
                                       f"{owner.service}:{owner.volumes[name]}",
                                       owner=owner.service)
            volumes[name].locations[facts.name] = dest
    peers = {f"peer:{spec.name}:{port.port}": Column(
        PEER, f"peer:{spec.name}:{port.port}", f"{spec.name}:{port.port}",
        {c.name: f"{spec.name}:{port.port}" for c in containers}, owner=spec.name,
        port=port.port) for spec in running for port in spec.ports if port.protocol == "tcp"}
    ldapi = _found_columns(SOCKET, sockets, containers, specs)
    return [*sorted(secrets.values(), key=lambda c: c.label),
            *directory_columns(SECRET, ldapi),
            *_found_columns(KEY, keys, containers, specs), *directory_columns(KEY, ldapi),
            *sorted(volumes.values(), key=lambda c: c.label),
            *peers.values(), *ldapi]


# What the directory holds that is worth as much as a file of secrets or keys: read over
# an LDAPI socket, as whoever 389-ds takes the daemon's UID for (FreeIPA's KDC: Directory
# Manager). (attribute, kind, what its values are)
DIRECTORY_READS = (("userPassword", SECRET, "password hashes"),
                   ("krbPrincipalKey", KEY, "Kerberos keys"))


def directory_columns(kind: str, sockets: list[Column]) -> list[Column]:
    """A column per LDAPI socket and directory attribute of ``kind``: its cell says
    whether a bind over that socket reads the attribute's values (and how many)."""
    return [Column(kind, f"{kind}:directory:{attr}:{socket.id}",
                   f"{socket.owner}:directory/{attr} over LDAPI ({words})",
                   {c: f"{path}|{attr}" for c, path in socket.locations.items()},
                   owner=socket.owner, probe="ldapread")
            for socket in sockets for attr, wanted, words in DIRECTORY_READS if wanted == kind]


# ---- daemons, from /proc -------------------------------------------------------------

_SOCKET_LINK = re.compile(r"socket:\[(\d+)\]")


def listening_sockets(pid: int) -> dict[int, int]:
    """Socket inode -> TCP port of every listening socket in ``pid``'s network namespace."""
    found = {}
    for table in ("tcp", "tcp6"):
        try:
            rows = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 9 and fields[3] == "0A":
                found[int(fields[9])] = int(fields[1].rsplit(":", 1)[1], 16)
    return found


def _ports_of(pids: list[int], listening: dict[int, int]) -> list[int]:
    """The listening ports whose sockets ``pids`` hold open."""
    ports = set()
    for pid in pids:
        try:
            links = [os.readlink(f) for f in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        for link in links:
            match = _SOCKET_LINK.fullmatch(link)
            if match and int(match.group(1)) in listening:
                ports.add(listening[int(match.group(1))])
    return sorted(ports)


def daemons_of(facts: ContainerFacts) -> list[Daemon]:
    """One daemon per distinct effective UID:GID (inside IDs) and root of the container's
    processes (a monolith's services each have their tree as root); the runtime's init
    (PID 1 of the container) names a row only when no other process shares its IDs."""
    container_view = _view(facts.init_pid)
    by_ids: dict[tuple[int, int, str], list] = {}
    for p in facts.processes:
        uid, gid = p.uids_container[1], p.gids_container[1]
        view = _view(p.pid)
        root = view[1] if view and container_view and view != container_view else ""
        if uid is not None and gid is not None:
            by_ids.setdefault((uid, gid, root), []).append(p)
    listening = listening_sockets(facts.init_pid)
    daemons = []
    for (uid, gid, root), processes in sorted(by_ids.items()):
        named = [p for p in processes if p.pid != facts.init_pid] or processes
        groups = {g for p in processes for g in p.groups_container}
        capabilities = sorted({c for p in processes for c in p.capabilities_effective})
        # A chroot holds no process that may chroot again or remount its namespace: such
        # a daemon reaches what its container's PID 1 does, and is measured there.
        confined = bool(root) and not LEAVES_A_CHROOT & set(capabilities)
        daemons.append(Daemon(
            facts.mode, facts.service, facts.name, uid, gid,
            sorted({p.command for p in named}), capabilities,
            sorted(groups - {gid}), _ports_of([p.pid for p in processes], listening),
            pid=min(p.pid for p in processes) if confined else 0, root=root))
    return daemons


def _view(pid: int) -> tuple[str, str] | None:
    """A process's mount namespace and root (``views.view_of``); None once it is gone."""
    try:
        return view_of(pid)
    except OSError:
        return None


def _where(daemon: Daemon, column: Column, container_pid: int) -> str | None:
    """Where ``daemon`` finds ``column``'s target: the container's path, or for a daemon
    with a view of its own, the path under which it sees the same file (None: it cannot).
    A spec secret is its path (each view holds its own copy of the secret there); a TCP
    peer is a network name, the same in every mount namespace."""
    location = column.locations[daemon.container]
    if not daemon.pid or column.kind == PEER or (column.kind == SECRET and not column.probe):
        return location
    path, bar, attribute = location.partition("|")
    seen = translate(container_pid, daemon.pid, path)
    return None if seen is None else seen + bar + attribute


# ---- the tries, from inside ----------------------------------------------------------

def probe(daemon: Daemon, columns: list[Column], runner: Runner = podman_exec,
          container_pid: int = 0) -> Row:
    """Try every column ``daemon``'s container can see, as the daemon's UID:GID, where
    the daemon sees it (``container_pid``: the container's PID 1, for a daemon with a view
    of its own). A column outside the daemon's view is none, with that said."""
    row = Row(daemon)
    where: dict[str, str] = {}
    for column in columns:
        if daemon.container in column.locations:
            seen = _where(daemon, column, container_pid)
            if seen is None:
                row.details[column.id] = f"not in its view (root {daemon.root})"
            else:
                where[column.id] = seen
    tried = [c for c in columns if c.id in where]
    args = [a for c in tried for a in (c.probe or PROBE_KIND[c.kind], where[c.id])]
    result = runner(daemon, args)
    for line in result.stdout.splitlines():
        fields = line.split("\t")
        if fields[0] == "id" and len(fields) > 1:
            row.probe_ids = fields[1]
        elif fields[0] == "caps" and len(fields) > 1 and fields[1]:
            row.probe_capabilities = decode_capabilities(fields[1])
        elif fields[0] == "result" and len(fields) >= 3 and fields[2] in CELLS:
            column = tried[int(fields[1])]
            row.cells[column.id] = fields[2]
            if len(fields) > 3 and fields[3]:
                row.details[column.id] = fields[3]
    if len(row.cells) < len(tried):
        row.error = (f"{len(tried) - len(row.cells)} of {len(tried)} tries gave no answer "
                     f"(exit {result.returncode}): {result.tail(3)}")
    for column in columns:
        row.cells.setdefault(column.id, NONE)
    return row


def measure(containers: list[ContainerFacts], specs: dict[str, Service],
            modes: list[str], runner: Runner = podman_exec) -> list[Matrix]:
    """A matrix per mode and stack, from that stack's running containers: a daemon's
    peers and secrets are its own stack's. A mode with nothing running gets an empty
    matrix (reported as not measured). The stack is named only when a mode has several."""
    matrices = []
    for mode in modes:
        stacks = sorted({c.stack for c in containers if c.mode == mode})
        if not stacks:
            matrices.append(Matrix(mode, [], []))
        for stack in stacks:
            mine = [c for c in containers if c.mode == mode and c.stack == stack]
            try:
                columns = columns_for(mine, specs)
            except OSError as exc:  # a container's PID 1 went while it was walked
                raise IpabuildError(f"a container of stack {stack!r} stopped or restarted "
                                    f"while it was measured ({exc}); see `ipabuild status "
                                    f"--name {stack}` and run posture again") from exc
            rows = [probe(d, columns, runner, c.init_pid) for c in mine for d in daemons_of(c)]
            matrices.append(Matrix(mode, columns, rows, stack if len(stacks) > 1 else ""))
    return matrices
