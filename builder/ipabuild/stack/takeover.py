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
from pathlib import Path

from ipabuild.stack.idranges import Interval


def take_over(root: Path, old: Interval, uid: int, gid: int = 0) -> int:
    """Give every file under ``root`` (``root`` included, links themselves, not their
    targets) owned by an ID of ``old`` to ``uid``:``gid``; the number changed."""
    changed = 0
    paths = [root]
    for directory, subdirectories, files in os.walk(root):
        paths += [Path(directory, name) for name in (*subdirectories, *files)]
    for path in paths:
        facts = path.lstat()
        if any(old.start <= host_id < old.end for host_id in (facts.st_uid, facts.st_gid)):
            os.lchown(path, uid, gid)
            changed += 1
    return changed
