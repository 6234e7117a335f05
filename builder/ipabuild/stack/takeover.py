"""Volumes a service made in a user namespace of its own, taken over by the service when
it no longer runs in one.

Why: a service whose one-time init step ran as root in a private user namespace (the CA
before its pkispawn ran as its own UID) left files owned by host IDs of that namespace's
range (inside UID 10017 or 0, group 0: host ``start + 10017``, ``start``). Run now as its
allocated host UID with GID 0, it can read none of them. ``ipabuild`` is root on the
host, so it maps them once, before the service starts: every file whose owner or group
lies in the old range gets the service's UID and group 0 (what the init step had handed
everything to inside the namespace). Files outside the range are left alone. The walk is
idempotent: an interrupted take-over is finished by the next ``up``, and the service is
not started until it is done, so it never runs on half-converted volumes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

USERNS_PREFIX = "userns="


@dataclass(frozen=True)
class OldRange:
    """Host IDs ``start`` .. ``start + size - 1``: the namespace the volume was made in."""

    start: int
    size: int

    def __contains__(self, host_id: object) -> bool:
        return isinstance(host_id, int) and self.start <= host_id < self.start + self.size


def range_of_label(ids_label: str) -> OldRange | None:
    """The namespace range a volume's IDs label names (``userns=START:SIZE``), or None
    for a volume made by a service running as a host UID (``uid=N``)."""
    if not ids_label.startswith(USERNS_PREFIX):
        return None
    start, _, size = ids_label.removeprefix(USERNS_PREFIX).partition(":")
    try:
        return OldRange(int(start), int(size))
    except ValueError:
        return None


def take_over(root: Path, old: OldRange, uid: int, gid: int = 0) -> int:
    """Give every file under ``root`` (``root`` included, links themselves, not their
    targets) owned by an ID of ``old`` to ``uid``:``gid``; the number changed."""
    changed = 0
    paths = [root]
    for directory, subdirectories, files in os.walk(root):
        paths += [Path(directory, name) for name in (*subdirectories, *files)]
    for path in paths:
        facts = path.lstat()
        if facts.st_uid in old or facts.st_gid in old:
            os.lchown(path, uid, gid)
            changed += 1
    return changed
