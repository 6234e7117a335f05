"""Host-side facts about a process, read from /proc: the "PID → uid_map → host UID" work.

Everything here is measured, never assumed: IDs as the host sees them (the four UID and
GID fields of /proc/PID/status), the user namespace maps, whether the namespace is the
host's, capabilities decoded to names, NoNewPrivs and the seccomp mode.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

# Linux capability numbers (include/uapi/linux/capability.h).
CAPABILITIES = [
    "chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid", "setuid",
    "setpcap", "linux_immutable", "net_bind_service", "net_broadcast", "net_admin", "net_raw",
    "ipc_lock", "ipc_owner", "sys_module", "sys_rawio", "sys_chroot", "sys_ptrace", "sys_pacct",
    "sys_admin", "sys_boot", "sys_nice", "sys_resource", "sys_time", "sys_tty_config", "mknod",
    "lease", "audit_write", "audit_control", "setfcap", "mac_override", "mac_admin", "syslog",
    "wake_alarm", "block_suspend", "audit_read", "perfmon", "bpf", "checkpoint_restore",
]
SECCOMP_MODES = {"0": "disabled", "1": "strict", "2": "filter"}


@dataclass(frozen=True)
class IdRange:
    """One line of uid_map/gid_map: inside..inside+size-1 maps to outside..outside+size-1."""

    inside: int
    outside: int
    size: int

    def to_host(self, inside: int) -> int | None:
        if self.inside <= inside < self.inside + self.size:
            return self.outside + inside - self.inside
        return None

    def to_inside(self, host: int) -> int | None:
        if self.outside <= host < self.outside + self.size:
            return self.inside + host - self.outside
        return None

    @property
    def covers_host_root(self) -> bool:
        return self.outside == 0


@dataclass
class ProcessFacts:
    """What one process is, as the host sees it and as its container sees it."""

    pid: int
    command: str
    uids_host: list[int]          # real, effective, saved, filesystem
    gids_host: list[int]
    uids_container: list[int | None]
    gids_container: list[int | None]
    uid_map: list[IdRange] = field(default_factory=list)
    gid_map: list[IdRange] = field(default_factory=list)
    own_user_namespace: bool = False
    capabilities_effective: list[str] = field(default_factory=list)
    no_new_privs: bool = False
    seccomp: str = "unknown"
    groups_host: list[int] = field(default_factory=list)  # supplementary GIDs (Groups:)

    @property
    def groups_container(self) -> list[int]:
        """The supplementary GIDs as the container sees them (unmapped ones left out)."""
        return [g for g in _translate(self.groups_host, self.gid_map) if g is not None]

    @property
    def host_root_uid(self) -> bool:
        return 0 in self.uids_host

    @property
    def host_root_gid(self) -> bool:
        return 0 in self.gids_host

    @property
    def map_reaches_host_root(self) -> bool:
        return any(r.covers_host_root for r in self.uid_map)

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["host_root_uid"] = self.host_root_uid
        data["host_root_gid"] = self.host_root_gid
        data["map_reaches_host_root"] = self.map_reaches_host_root
        return data


def _status(pid: int) -> dict[str, str]:
    text = Path(f"/proc/{pid}/status").read_text()
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def _id_map(pid: int, kind: str) -> list[IdRange]:
    rows = Path(f"/proc/{pid}/{kind}").read_text().split("\n")
    return [IdRange(*(int(x) for x in row.split())) for row in rows if row.strip()]


def decode_capabilities(mask_hex: str) -> list[str]:
    mask = int(mask_hex, 16)
    return [name for bit, name in enumerate(CAPABILITIES) if mask & (1 << bit)] + \
        [f"cap_{bit}" for bit in range(len(CAPABILITIES), 64) if mask & (1 << bit)]


def _translate(ids: list[int], ranges: list[IdRange]) -> list[int | None]:
    out: list[int | None] = []
    for host_id in ids:
        out.append(next((v for r in ranges if (v := r.to_inside(host_id)) is not None), None))
    return out


def host_user_namespace() -> str:
    """The host's user namespace: PID 1's, or ours where PID 1's cannot be read (some
    sandboxes hide it; this process runs in the host namespace either way)."""
    try:
        return os.readlink("/proc/1/ns/user")
    except PermissionError:
        return os.readlink("/proc/self/ns/user")


def process_facts(pid: int) -> ProcessFacts:
    """Measure one process (raises OSError when it vanished)."""
    status = _status(pid)
    uids = [int(x) for x in status["Uid"].split()]
    gids = [int(x) for x in status["Gid"].split()]
    uid_map, gid_map = _id_map(pid, "uid_map"), _id_map(pid, "gid_map")
    own_ns = os.readlink(f"/proc/{pid}/ns/user") != host_user_namespace()
    command = Path(f"/proc/{pid}/comm").read_text().strip()
    return ProcessFacts(
        pid=pid, command=command, uids_host=uids, gids_host=gids,
        uids_container=_translate(uids, uid_map), gids_container=_translate(gids, gid_map),
        uid_map=uid_map, gid_map=gid_map, own_user_namespace=own_ns,
        capabilities_effective=decode_capabilities(status.get("CapEff", "0")),
        no_new_privs=status.get("NoNewPrivs", "0").strip() == "1",
        seccomp=SECCOMP_MODES.get(status.get("Seccomp", "").strip(), "unknown"),
        groups_host=[int(x) for x in status.get("Groups", "").split()],
    )


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (a container's whole process tree)."""
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                stack.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
    return sorted(set(found))
