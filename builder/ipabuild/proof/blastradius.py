"""Blast radius: what a compromised daemon's UID can actually reach, per mode.

The privilege facts of ``posture`` (UIDs, user namespaces, capabilities) say how far a
compromised daemon is from host root. A reviewer choosing between the monolith and the
split stack asks the next question: *if one daemon is compromised, what does the attacker
get?* This module holds the answer's shape and the words around it: a matrix per mode
whose rows are daemons (the distinct UID:GID of a container's processes) and whose
columns are what an attacker wants (bootstrap secrets, private keys, keytabs and NSS key
databases found on volumes and tmpfs, volumes, peers' ports, LDAPI sockets). Every cell
is a measurement ``ipabuild.proof.blastprobe`` made from inside the container as that UID; no
cell is inferred from the specs, so the matrix changes exactly when a fact does. Beside
the measured peers (podman's network filters nothing) stands what the mode's overlay's
NetworkPolicies would allow in a cluster (``ipabuild.proof.netpolicy``), read from the manifests.

The text view of the matrix is transposed (a row per secret or key, a narrow column per
daemon): a stack has a few daemons and dozens of secrets and keys, so only that way round
does a pasted table stay about as wide as its longest path.

Kept free of podman so the matrix and summary logic is tested with fake measurements.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from rich.table import Table
from rich.text import Text

from ipabuild.core.tables import new_table
from ipabuild.proof.netpolicy import Peer, PolicyView

# Column kinds, in the order the matrix shows them.
SECRET, KEY, VOLUME, PEER, SOCKET = "secret", "key", "volume", "peer", "socket"
KINDS = (SECRET, KEY, VOLUME, PEER, SOCKET)
# Cell values.
READ_WRITE, READ, WRITE, CONNECT, NONE = "read+write", "read", "write", "connect", "none"
READABLE = (READ, READ_WRITE)
WRITABLE = (WRITE, READ_WRITE)


@dataclass
class Column:
    """Something worth having, and where each container sees it.

    ``locations`` maps a container name to what its probe tries there: a path (secret,
    key, volume, socket) or ``host:port`` (peer). A container without an entry cannot see
    the thing at all (another container's tmpfs or unshared volume): its cell is "none".
    """

    kind: str
    id: str
    label: str
    locations: dict[str, str] = field(default_factory=dict)
    owner: str = ""  # the service whose volume, tmpfs or port it is ("" for secrets)
    port: int = 0    # a peer's TCP port
    # How it is tried, when not as its kind says: "ldapread", what a bind over an LDAPI
    # socket reads of the directory (secrets and keys kept there, not in files).
    probe: str = ""

    @property
    def short(self) -> str:
        """A header a heat map can stand: the owner and the path's last two parts
        (``ldap:…/slapd-EXAMPLE-TEST/key4.db``); the full label stays in ``label``."""
        if self.kind in (SECRET, PEER) or ":" not in self.label:
            return self.label
        owner, path = self.label.split(":", 1)
        parts = path.strip("/").split("/")
        return f"{owner}:{'…/' if len(parts) > 2 else '/'}{'/'.join(parts[-2:])}"


@dataclass
class Daemon:
    """One row: the processes of a container that share a UID and GID (inside IDs)."""

    mode: str
    service: str
    container: str
    uid: int
    gid: int
    commands: list[str]
    capabilities: list[str] = field(default_factory=list)
    groups: list[int] = field(default_factory=list)  # supplementary, as the daemon has them
    ports: list[int] = field(default_factory=list)   # TCP ports its own processes listen on
    # A root of its own inside the container (e.g. a monolith's service chrooted into its
    # tree, in a mount namespace of its own), "" when it has the container's. ``pid``: one
    # of its processes, whose view the tries enter; 0 when they run in the container's
    # view (the same root, or a chroot its capabilities let it leave).
    root: str = ""
    pid: int = 0

    @property
    def key(self) -> str:
        return f"{self.container}/{self.uid}:{self.gid}" + (f"@{self.root}" if self.root else "")

    @property
    def label(self) -> str:
        """``service command+command`` (uid, and its own root if any): how the report
        names the row."""
        within = ""
        if self.root:
            within = f", in {self.root}" if self.pid else f", in {self.root}, which it can leave"
        return f"{self.service} {'+'.join(self.commands)} (uid {self.uid}{within})"


@dataclass
class Row:
    """One daemon's measured access: a cell per column id, plus what the probe saw.

    ``probe_ids`` is ``id -u:id -g id -G`` and ``probe_capabilities`` the CapEff of the
    probe process itself, so a reader sees whether the probe ran with the daemon's
    credentials (podman exec cannot add the daemon's supplementary groups)."""

    daemon: Daemon
    cells: dict[str, str] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)  # absent, denied, LDAPI identity
    probe_ids: str = ""
    probe_capabilities: list[str] = field(default_factory=list)
    error: str = ""

    def cell(self, column: Column) -> str:
        return self.cells.get(column.id, NONE)

    @property
    def same_credentials(self) -> bool:
        """The probe ran as the daemon: same capabilities and supplementary groups."""
        groups = self.probe_ids.split(" ", 1)[1].split() if " " in self.probe_ids else []
        wanted = sorted({str(g) for g in [self.daemon.gid, *self.daemon.groups]})
        return (sorted(self.probe_capabilities) == sorted(self.daemon.capabilities)
                and sorted(set(groups)) == wanted)


@dataclass
class Matrix:
    """A mode's "compromise of X exposes" matrix."""

    mode: str
    columns: list[Column]
    rows: list[Row]
    stack: str = ""  # "" when nothing ran in this mode
    # what the mode's overlay's NetworkPolicies allow; None: no overlay was built
    cluster: PolicyView | None = None

    @property
    def name(self) -> str:
        """``split``, or ``split (stack br)`` when several stacks run in one mode."""
        return f"{self.mode} (stack {self.stack})" if self.stack else self.mode

    def of_kind(self, kind: str) -> list[Column]:
        return [c for c in self.columns if c.kind == kind]

    def reached(self, row: Row, kind: str, values: tuple[str, ...] = READABLE) -> list[Column]:
        return [c for c in self.of_kind(kind) if row.cell(c) in values]

    def peers_of(self, row: Row) -> list[Column]:
        """Peer columns that are another daemon's: not a port the row's own processes
        listen on (in the monolith every daemon's peers share its container)."""
        mine = row.daemon
        return [c for c in self.of_kind(PEER)
                if not (c.owner == mine.service and c.port in mine.ports)]

    def cluster_peers(self, row: Row) -> list[Peer] | None:
        """The ports the NetworkPolicies let ``row``'s pod open, less the daemon's own
        (as ``peers_of``); None when there is no overlay or no pod runs its service."""
        pod = self.cluster.pod_of(row.daemon.service) if self.cluster else None
        if self.cluster is None or pod is None:
            return None
        return [p for p in self.cluster.peers(pod)
                if not (p.same_pod and p.port.port in row.daemon.ports)]

    def to_json(self) -> dict[str, object]:
        return {"mode": self.mode, "stack": self.stack, "name": self.name,
                "columns": [{**asdict(c), "short": c.short} for c in self.columns],
                "rows": [{**asdict(r), "label": r.daemon.label,
                          "cells": {c.id: r.cell(c) for c in self.columns},
                          "same_credentials": r.same_credentials,
                          "measured_peers": measured_peers(self, r),
                          "cluster_peers": _peers_json(self.cluster_peers(r)),
                          "cluster_peers_text": cluster_text(self, r)} for r in self.rows],
                "network_policies": self.cluster.to_json() if self.cluster else None,
                "summary": summary(self)}


def _peers_json(peers: list[Peer] | None) -> list[dict[str, object]] | None:
    return None if peers is None else [p.to_json() for p in peers]


def _count(part: int, whole: int, noun: str) -> str:
    """``all 7 secrets``, ``2 of 11 secrets``, ``1 of 1 key``, ``no keys``."""
    if whole == 0:
        return f"no {noun}s"
    if whole == 1:
        return f"{part} of 1 {noun}"
    return f"all {whole} {noun}s" if part == whole else f"{part} of {whole} {noun}s"


def exposure(matrix: Matrix, row: Row) -> str:
    """What compromising ``row``'s daemon gives, in words (counts, not names)."""
    secrets, keys = matrix.of_kind(SECRET), matrix.of_kind(KEY)
    parts = [_count(len(matrix.reached(row, SECRET)), len(secrets), "secret"),
             _count(len(matrix.reached(row, KEY)), len(keys), "key")]
    written = matrix.reached(row, SECRET, WRITABLE) + matrix.reached(row, KEY, WRITABLE)
    if written:
        parts.append(f"{len(written)} writable")
    sockets = matrix.of_kind(SOCKET)
    if sockets:
        parts.append(f"LDAPI {len(matrix.reached(row, SOCKET, (CONNECT,)))} of {len(sockets)}")
    peers = matrix.peers_of(row)
    if peers:
        reached = [c for c in peers if row.cell(c) == CONNECT]
        parts.append(f"{len(reached)} of {len(peers)} peer ports")
    return ", ".join(parts)


def summary(matrix: Matrix) -> str:
    """One line per mode, e.g. ``monolithic: any daemon → all 7 secrets, all 9 keys``;
    computed from the cells, so one more readable secret changes it."""
    if not matrix.rows:
        return f"{matrix.name}: not measured (nothing running in this mode)"
    said = [(row.daemon, exposure(matrix, row)) for row in matrix.rows]
    if len({words for _, words in said}) == 1 and len(said) > 1:
        return f"{matrix.name}: any daemon → {said[0][1]}"
    return f"{matrix.name}: " + "; ".join(
        f"{d.service} {'+'.join(d.commands)} → {words}" for d, words in said)


THING_COLUMNS = ("kind", "secret or key")


def _header(daemon: Daemon) -> str:
    """A daemon's column header: its service over its UID (the notes name its commands)."""
    return f"{daemon.service}\n{daemon.uid}"


def _readers(matrix: Matrix, column: Column) -> list[Row]:
    return [r for r in matrix.rows if r.cell(column) in READABLE]


def _tally(part: int, whole: int) -> Text:
    """``3 of 26``; ``all 26`` in bold red: the daemon reaches every one of them."""
    if whole and part == whole:
        return Text(f"all {whole}", style="bold red")
    return Text(f"{part} of {whole}")


def matrix_table(matrix: Matrix) -> Table:
    """A row per secret and key (with its kind, its whole label), a column per daemon
    (service over UID), cells read/write/read+write/none. A secret or key every daemon
    reads is a bold red row; two last rows count what each daemon reads and writes, and a
    daemon that reads them all has its header and count in bold red (what the old
    daemon-per-row table marked by a red row). ``matrix_notes`` says who each column is."""
    things = matrix.of_kind(SECRET) + matrix.of_kind(KEY)
    headers = [_header(r.daemon) for r in matrix.rows]
    table = new_table(f"blast radius, {matrix.name}: what a compromised daemon reads "
                      f"(columns: service, UID)", [*THING_COLUMNS, *headers],
                      whole=("kind", *headers))
    for index, thing in enumerate(things):
        everyone = len(matrix.rows) > 1 and len(_readers(matrix, thing)) == len(matrix.rows)
        table.add_row(thing.kind, thing.label, *[r.cell(thing) for r in matrix.rows],
                      style="bold red" if everyone else "",
                      end_section=index == len(things) - 1)
    reads = [len(matrix.reached(r, SECRET)) + len(matrix.reached(r, KEY)) for r in matrix.rows]
    writes = [len(matrix.reached(r, SECRET, WRITABLE)) + len(matrix.reached(r, KEY, WRITABLE))
              for r in matrix.rows]
    table.add_row("", "reads", *[_tally(n, len(things)) for n in reads])
    table.add_row("", "writes", *[_tally(n, len(things)) for n in writes])
    for column, count in zip(table.columns[len(THING_COLUMNS):], reads, strict=True):
        if things and count == len(things):
            column.header_style = "bold red"
    return table


def matrix_notes(matrix: Matrix) -> list[str]:
    """What the matrix's short headers stand for, and its red rows and columns in words
    (so a pasted, colourless table still says them)."""
    things = matrix.of_kind(SECRET) + matrix.of_kind(KEY)
    notes = [f"{r.daemon.service} {r.daemon.uid}: {r.daemon.label}, gid {r.daemon.gid}, "
             f"in {r.daemon.container}" for r in matrix.rows]
    if len(matrix.rows) > 1:
        everyone = [t.label for t in things if len(_readers(matrix, t)) == len(matrix.rows)]
        notes.append(f"read by every daemon: {', '.join(everyone) or 'none'}")
    every = [r.daemon.label for r in matrix.rows
             if things and len(matrix.reached(r, SECRET)) + len(matrix.reached(r, KEY))
             == len(things)]
    if every:
        notes.append(f"reads every secret and key: {', '.join(every)}")
    return notes


NO_POLICY = "no NetworkPolicy: all"


def measured_peers(matrix: Matrix, row: Row) -> list[str]:
    """The peers' ports ``row``'s daemon connected to on podman's network."""
    return [c.label for c in matrix.peers_of(row) if row.cell(c) == CONNECT]


def cluster_text(matrix: Matrix, row: Row) -> str:
    """The NetworkPolicies' answer for ``row`` in one cell: other pods' ports first, then
    its own pod's (localhost: no policy applies)."""
    if matrix.cluster is None:
        return "not known (no overlay built)"
    if not matrix.cluster.policies:
        return NO_POLICY
    peers = matrix.cluster_peers(row)
    if peers is None:
        return f"not in overlay {matrix.cluster.overlay}"
    others = ", ".join(p.label for p in peers if not p.same_pod) or "none"
    own = [p.label for p in peers if p.same_pod]
    return others + (f"; same pod: {', '.join(own)}" if own else "")


REACH_COLUMNS = ("daemon", "reaches", "what")
REACH_KINDS = ("writable volumes", "peer ports it connects to",
               "peers allowed by NetworkPolicies (cluster)", "LDAPI sockets")


def reach_table(matrix: Matrix) -> Table:
    """What else a daemon reaches: writable volumes, peers (TCP, measured, beside what the
    mode's NetworkPolicies would allow in a cluster), LDAPI sockets. One line per daemon
    and kind, so a pasted table is as wide as its longest list, not as all four."""
    table = new_table(f"blast radius, {matrix.name}: volumes, peers, sockets", REACH_COLUMNS,
                      whole=("daemon", "reaches"))
    for row in matrix.rows:
        volumes = [c.label for c in matrix.reached(row, VOLUME, WRITABLE)]
        sockets = [c.label + (f" ({row.details[c.id]})" if row.details.get(c.id) else "")
                   for c in matrix.reached(row, SOCKET, (CONNECT,))]
        values = (", ".join(volumes) or "none", ", ".join(measured_peers(matrix, row)) or "none",
                  cluster_text(matrix, row), ", ".join(sockets) or "none")
        for index, (kind, value) in enumerate(zip(REACH_KINDS, values, strict=True)):
            table.add_row(row.daemon.label, kind, value,
                          end_section=index == len(REACH_KINDS) - 1)
    return table


def reach_notes(matrix: Matrix) -> list[str]:
    """Where the cluster column comes from, in one line."""
    if matrix.cluster is None:
        return []
    return [f"peers allowed by NetworkPolicies: overlay {matrix.cluster.overlay}, "
            f"{len(matrix.cluster.policies)} NetworkPolicies; a pod's egress and the "
            f"destination pod's ingress must both allow a port; \"same pod\" ports are "
            f"reached over localhost, which no NetworkPolicy filters"]
