"""The host ID registry: which host UIDs and GIDs (and ports) each stack owns, recorded.

A stack's host IDs used to be derived from a hash of its name, so two names could
collide (``tenant0`` and ``tenant51`` did). Now they are allocated under a lock from
two pools and recorded in ``$IPABUILD_STATE_DIR/idranges.json`` (default
/var/lib/ipabuild), written atomically (temporary file, fsync, rename):

- a user-namespace range of ``USERNS_SIZE`` IDs (UIDs and GIDs alike) for the services
  that run in a namespace of their own (a monolith, a root init step), taken from the
  ``containers`` sub-ID range of /etc/subuid and /etc/subgid (both files), from its top
  down, since podman's ``--userns=auto`` hands out the same range from the bottom up;
- one UID per split service, from ``UID_POOL``: split services run in the host's user
  namespace with ``--user UID:0``, and podman refuses a ``--user`` above 2147483647,
  where the ``containers`` range (as ``doctor --fix`` sets it) begins;
- beside the IDs, one host port per published container port (``hostports``): from
  20000-65535 outside the kernel's ephemeral range, not another stack's, and bound by
  nothing when picked.

Each allocation is first fit over the sorted free intervals: the pool minus every
other stack's record, minus what containers use now (``foreign``, measured by the
caller), minus every other user's sub-ID entries (rootless podman's ranges) and host
accounts. A new interval lies in a gap of that difference, so it is disjoint from
all of them by construction. The IDs that stacks got from the old hash
(``legacy_*``: 200000000.. for namespaces, 1000000000..1999999999 for UIDs) lie below
both pools, so they never meet a new allocation; an existing stack whose volumes
carry them keeps them (``evidence``) unless they collide with what is taken.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ipabuild.core.errors import IpabuildError, UsageError
from ipabuild.core.hostids import (
    USERNS_SIZE,
    legacy_uid,
    legacy_userns_base,
)
from ipabuild.core.locks import held, state_dir
from ipabuild.stack.hostports import pick_port, port_free, port_pool
from ipabuild.stack.intervals import Interval, first_fit, intersect, subtract

SUBID_USER = "containers"
SUBID_FILES = (Path("/etc/subuid"), Path("/etc/subgid"))
REGISTRY_FILE = "idranges.json"
IDS_LABEL = "io.ipabuild.host-ids"  # on volumes: "uid=N" or "userns=START:SIZE"
MAX_USER_ID = 2_147_483_647  # podman: "uids and gids must be in range 0-2147483647"
FIX_SPACE = ("remove stacks you no longer need with `ipabuild down --name NAME --volumes`, "
             "or widen the `containers` entry in /etc/subuid and /etc/subgid")


UID_POOL = Interval(2_000_000_000, MAX_USER_ID - 2_000_000_000, "split service UIDs")


def subid_entries(path: Path) -> list[tuple[str, Interval]]:
    """(user, range) of each well-formed ``user:start:count`` line; none if no file."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []
    entries = []
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            entries.append((parts[0], Interval(int(parts[1]), int(parts[2]),
                                               f"{path}'s entry for {parts[0]}")))
    return entries


@dataclass
class StackIds:
    """A stack's host IDs: its namespace range (if any) and each split service's UID;
    and its host ports (``hostports``): ``"service:container port"`` → the host port
    both its TCP and UDP are published on."""

    userns: Interval | None = None
    uids: dict[str, int] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    def intervals(self, owner: str) -> list[Interval]:
        ranges = [Interval(self.userns.start, self.userns.size, owner)] if self.userns else []
        return ranges + [Interval(uid, 1, f"{owner} ({service})")
                         for service, uid in sorted(self.uids.items())]

    def describe(self) -> str:
        """One line for people: "user namespace A-B, UID N (service), ..."."""
        parts = [f"user namespace {self.userns}"] if self.userns else []
        parts += [f"UID {uid} ({service})" for service, uid in sorted(self.uids.items())]
        if self.ports:
            runs: list[Interval] = []
            for port in sorted(set(self.ports.values())):
                if runs and runs[-1].end == port:
                    runs[-1] = Interval(runs[-1].start, runs[-1].size + 1)
                else:
                    runs.append(Interval(port, 1))
            parts.append(f"{len(self.ports)} host port(s) ({', '.join(map(str, runs))})")
        return ", ".join(parts)

    def update(self, other: StackIds) -> None:
        """Take ``other``'s namespace range (if any) and UIDs."""
        self.userns = other.userns or self.userns
        self.uids.update(other.uids)

    def to_json(self) -> dict[str, object]:
        return {"userns": [self.userns.start, self.userns.size] if self.userns else None,
                "uids": dict(sorted(self.uids.items())),
                "ports": dict(sorted(self.ports.items()))}

    @classmethod
    def from_json(cls, data: dict) -> StackIds:  # type: ignore[type-arg]
        userns = data.get("userns")
        return cls(Interval(int(userns[0]), int(userns[1])) if userns else None,
                   {str(k): int(v) for k, v in (data.get("uids") or {}).items()},
                   {str(k): int(v) for k, v in (data.get("ports") or {}).items()})


class Registry:
    """The recorded allocations of this host (see the module docstring)."""

    def __init__(self, directory: Path | None = None,
                 subid_files: tuple[Path, Path] = SUBID_FILES,
                 uid_pool: Interval = UID_POOL,
                 ports: tuple[Callable[[], list[Interval]], Callable[[int], bool]] = (
                     port_pool, port_free)) -> None:
        self.directory = directory or state_dir()
        self.path = self.directory / REGISTRY_FILE
        self.subid_files = subid_files
        self.uid_pool = uid_pool
        self.port_pool, self.port_free = ports  # the pool, and whether a port is bound

    # --- the file -----------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[dict[str, StackIds]]:
        """The records, under the registry lock (held for a load, a fit and a save)."""
        with held(self.directory / "locks" / "idranges.lock", "the host ID registry",
                  on_wait=lambda _pid: None):
            yield self._load()

    def _load(self) -> dict[str, StackIds]:
        try:
            document = json.loads(self.path.read_text())
            return {name: StackIds.from_json(ids) for name, ids in document["stacks"].items()}
        except FileNotFoundError:
            return {}
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            raise UsageError(f"{self.path} is not an ipabuild ID registry ({exc})",
                             "restore it, or move it away: the next `up` of each stack "
                             "records it again from its volumes' labels") from exc

    def _save(self, stacks: dict[str, StackIds]) -> None:
        document = {"about": "host IDs and ports allocated by ipabuild "
                             "(docs/multitenancy.md)",
                    "version": 1,
                    "stacks": {name: stacks[name].to_json() for name in sorted(stacks)}}
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with temporary.open("w") as out:
            json.dump(document, out, indent=1)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self.path)

    def recorded(self) -> dict[str, StackIds]:
        with self._locked() as stacks:
            return stacks

    # --- allocation -----------------------------------------------------------------

    def allocate(self, stack: str, *, userns: bool, services: list[str],
                 evidence: StackIds | None = None,
                 foreign: Callable[[], list[Interval]] = list,
                 requested: Mapping[str, int] | None = None,
                 ports: Sequence[str] = (),
                 port_evidence: Mapping[str, int] | None = None) -> StackIds:
        """The stack's IDs: its record, completed with what ``userns`` and ``services``
        need. ``evidence``: IDs its existing volumes are owned by (kept, not moved);
        ``foreign``: what containers use now, called under the lock; ``requested``: the
        UID a service must get (as OpenShift assigns one), checked like an allocation;
        ``ports``: the ``"service:port"`` keys that need a host port; ``port_evidence``:
        the host ports its existing containers are published on (kept, if in the pool and
        no other stack's: a lost or older record is rebuilt from them)."""
        requested = requested or {}
        with self._locked() as stacks:
            record = stacks.get(stack) or StackIds()
            taken = [iv for name, ids in sorted(stacks.items()) if name != stack
                     for iv in ids.intervals(f"stack {name!r}")]
            taken += foreign() + self._other_subids()
            changed = _adopt(stack, record, evidence or StackIds(), taken)
            clash = next(((mine, other) for mine in record.intervals(f"stack {stack!r}")
                          for other in taken if mine.overlaps(other)), None)
            if clash:
                raise IpabuildError(
                    f"host IDs {clash[0]} of {clash[0].owner} are now used by "
                    f"{clash[1].owner} ({clash[1]}) (fix: remove that, or "
                    f"`ipabuild down --name {stack} --volumes` to get new IDs)")
            if userns and record.userns is None:
                pool = subtract(self._userns_pool(), [self.uid_pool])
                record.userns = self._fit(pool, USERNS_SIZE, taken, True,
                                          f"`{SUBID_USER}` sub-ID range")
                changed = True
            for service in services:
                wanted = requested.get(service)
                if service in record.uids:
                    if wanted is not None and wanted != record.uids[service]:
                        raise UsageError(
                            f"stack {stack!r} runs {service} as host UID "
                            f"{record.uids[service]}, which its volumes are owned by, not "
                            f"{wanted}", f"drop --uid {service}=..., or `ipabuild down "
                            f"--name {stack} --volumes` first to start afresh")
                    continue
                used = taken + record.intervals(stack) + _host_accounts()
                if wanted is not None:
                    record.uids[service] = self._claim(service, wanted, used)
                else:
                    pool = subtract([self.uid_pool], self._all_subids())
                    record.uids[service] = self._fit(pool, 1, used, False,
                                                     f"UID pool {self.uid_pool}").start
                changed = True
            changed = self._allocate_ports(stacks, stack, record, ports,
                                           port_evidence or {}) or changed
            if changed:
                stacks[stack] = record
                self._save(stacks)
            return record

    def _allocate_ports(self, stacks: dict[str, StackIds], stack: str, record: StackIds,
                        keys: Sequence[str], evidence: Mapping[str, int]) -> bool:
        """A host port for each key the record lacks (``hostports``); True if any. The
        port its container has now is kept when it lies in the pool (ports podman picked
        before lie in the ephemeral range: those are picked anew)."""
        missing = [key for key in keys if key not in record.ports]
        if not missing:
            return False
        pool = self.port_pool()
        taken = {port for name, ids in stacks.items() if name != stack
                 for port in ids.ports.values()}
        for key in missing:
            mine = set(record.ports.values())
            offered = evidence.get(key)
            if (offered is not None and offered not in taken | mine
                    and any(block.overlaps(Interval(offered, 1)) for block in pool)):
                record.ports[key] = offered
            else:
                record.ports[key] = pick_port(pool, taken | mine | set(evidence.values()),
                                              self.port_free)
        return True

    def release(self, stack: str) -> StackIds | None:
        """Forget the stack's IDs (its volumes are gone); returns what it held."""
        with self._locked() as stacks:
            released = stacks.pop(stack, None)
            if released is not None:
                self._save(stacks)
            return released

    def _claim(self, service: str, uid: int, used: list[Interval]) -> int:
        """``uid`` for ``service`` if nothing else has it: not another stack's, a running
        container's, a host account's nor inside any sub-ID range (user namespaces)."""
        if not 0 < uid <= MAX_USER_ID:
            raise UsageError(f"host UID {uid} for {service} is outside 1-{MAX_USER_ID}",
                             "podman runs --user only with UIDs in that range; choose one")
        mine = Interval(uid, 1)
        other = next((t for t in used + self._all_subids() if t.overlaps(mine)), None)
        if other is not None:
            raise UsageError(f"host UID {uid} for {service} is taken by {other.owner} "
                             f"({other})", "choose another UID, or leave --uid out to "
                             "have one allocated")
        return uid

    def _fit(self, pool: list[Interval], size: int, taken: list[Interval], from_top: bool,
             where: str) -> Interval:
        found = first_fit(subtract(pool, taken), size, from_top)
        if found is None:
            raise UsageError(f"no {size} free host IDs left in the {where} "
                             f"({', '.join(map(str, pool)) or 'empty'})", FIX_SPACE)
        return found

    def _userns_pool(self) -> list[Interval]:
        subuid, subgid = ([r for user, r in subid_entries(path) if user == SUBID_USER]
                          for path in self.subid_files)
        pool = intersect(subuid, subgid)
        if not pool:
            raise UsageError(f"no `{SUBID_USER}` entry in both "
                             f"{' and '.join(map(str, self.subid_files))} for user namespaces",
                             "run `ipabuild doctor --fix`")
        return pool

    def _all_subids(self) -> list[Interval]:
        return [r for path in self.subid_files for _user, r in subid_entries(path)]

    def _other_subids(self) -> list[Interval]:
        """Sub-ID ranges of other users: rootless podman maps its containers there."""
        return [r for path in self.subid_files for user, r in subid_entries(path)
                if user != SUBID_USER]


def _adopt(stack: str, record: StackIds, evidence: StackIds, taken: list[Interval]) -> bool:
    """Record what the stack's volumes are owned by; True when the record grew."""
    changed = False
    offered = StackIds(evidence.userns if record.userns is None else None,
                       {s: u for s, u in evidence.uids.items() if s not in record.uids})
    mismatch = [f"{s}: volume {u}, record {record.uids[s]}" for s, u in evidence.uids.items()
                if s in record.uids and record.uids[s] != u]
    if evidence.userns and record.userns and evidence.userns.start != record.userns.start:
        mismatch.append(f"namespace: volume {evidence.userns}, record {record.userns}")
    if mismatch:
        raise IpabuildError(f"stack {stack!r}: its volumes are owned by other host IDs than "
                            f"its record says ({'; '.join(mismatch)}) (fix: "
                            f"`ipabuild down --name {stack} --volumes` and start it again)")
    for mine in offered.intervals(f"stack {stack!r}"):
        other = next((t for t in taken if t.overlaps(mine)), None)
        if other is not None:
            raise IpabuildError(
                f"stack {stack!r}'s volumes are owned by host IDs {mine} (given before IDs "
                f"were allocated), which {other.owner} uses ({other}) (fix: "
                f"`ipabuild down --name {stack} --volumes` to start it afresh with its own IDs)")
    if offered.userns:
        record.userns = offered.userns
        changed = True
    if offered.uids:
        record.uids.update(offered.uids)
        changed = True
    return changed


def _host_accounts() -> list[Interval]:
    """Host users and groups (from NSS): a split UID must not be someone's on the host."""
    ids = {entry.pw_uid for entry in pwd.getpwall()} | {entry.gr_gid for entry in grp.getgrall()}
    return [Interval(i, 1, "a host account") for i in sorted(ids)]


def userns_of_label(label: str) -> Interval | None:
    """The user namespace range an ``IDS_LABEL`` value names (``userns=START:SIZE``), or
    None for any other value (``uid=N``, none, garbage)."""
    kind, _, value = label.partition("=")
    start, _, size = value.partition(":")
    if kind == "userns" and start.isdigit() and size.isdigit():
        return Interval(int(start), int(size))
    return None


def volume_ids(label: str, stack: str, service: str, in_userns: bool) -> StackIds:
    """The IDs a volume of ``service`` was made for: its ``IDS_LABEL`` value, or for a
    volume made before the registry (no label), the IDs then derived from the names."""
    kind, _, value = label.partition("=")
    if in_userns:
        return StackIds(userns_of_label(label)
                        or Interval(legacy_userns_base(stack), USERNS_SIZE))
    if kind == "userns":
        # Made when the service ran in a namespace of its own (the CA's former root
        # init): no UID to keep; ``up`` allocates one and takes the files over
        # (``takeover``).
        return StackIds()
    return StackIds(uids={service: int(value) if kind == "uid" and value.isdigit()
                          else legacy_uid(stack, service)})
