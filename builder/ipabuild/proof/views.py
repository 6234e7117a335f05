"""A process's own view of the file system: where a file its container sees lies for it.

A daemon may run in a mount namespace and root of its own inside its container (the
monolith's supervisor chroots each service into its tree and binds only that service's
volumes, tmpfs and secrets there). What it can reach is then what its own view holds, not
what the container's PID 1 sees: a probe that runs in the container's view over-counts.

``translate`` finds the path under which a process sees a file of the container's view:
from both processes' ``/proc/PID/mountinfo`` (which file system, and which directory of
it, each mount shows where), then confirmed by the file's identity (device and inode,
read as host root through ``/proc/PID/root``). A file the process cannot see has no path.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Mount:
    """One line of /proc/PID/mountinfo: the directory ``root`` of the file system
    ``device`` shown at ``point`` (relative to the process's own root)."""

    device: str
    root: str
    point: str


_ESCAPED = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (``\\040``)."""
    return _ESCAPED.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    """The mounts of a mountinfo text, in its order (a later mount covers an earlier one
    at the same point)."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 5:
            mounts.append(Mount(fields[2], _unescape(fields[3]), _unescape(fields[4])))
    return mounts


def mounts_of(pid: int) -> list[Mount]:
    return parse_mountinfo(Path(f"/proc/{pid}/mountinfo").read_text())


def _under(path: str, top: str) -> str | None:
    """``path`` relative to ``top`` ("" for ``top`` itself), or None when not under it."""
    if top == "/":
        return path.lstrip("/")
    if path == top:
        return ""
    if path.startswith(top.rstrip("/") + "/"):
        return path[len(top.rstrip("/")) + 1:]
    return None


def _join(top: str, rel: str) -> str:
    return os.path.normpath(os.path.join(top, rel)) if rel else top


def in_file_system(path: str, mounts: list[Mount]) -> tuple[str, str] | None:
    """(device, path within that file system) of ``path`` in a view with ``mounts``: the
    last mount whose point holds it (the one on top)."""
    best: tuple[int, Mount, str] | None = None
    for index, mount in enumerate(mounts):
        rel = _under(path, mount.point)
        if rel is not None and (best is None or len(mount.point) > len(best[1].point)
                                or (len(mount.point) == len(best[1].point) and index > best[0])):
            best = (index, mount, rel)
    if best is None:
        return None
    return best[1].device, _join(best[1].root, best[2])


def candidates(device: str, inner: str, mounts: list[Mount]) -> list[str]:
    """Every path under which a view with ``mounts`` shows ``inner`` of ``device``, the
    most specific mount first."""
    found = []
    for mount in sorted(mounts, key=lambda m: len(m.root), reverse=True):
        if mount.device != device:
            continue
        rel = _under(inner, mount.root)
        if rel is not None:
            found.append(_join(mount.point, rel))
    return found


def _identity(pid: int, path: str) -> tuple[int, int] | None:
    try:
        info = os.lstat(f"/proc/{pid}/root/{path.lstrip('/')}")
    except OSError:
        return None
    return info.st_dev, info.st_ino


def translate(container_pid: int, pid: int, path: str) -> str | None:
    """Where process ``pid`` sees the file that ``container_pid`` sees at ``path``; None
    when it cannot see that file (or the file is gone)."""
    wanted = _identity(container_pid, path)
    located = in_file_system(path, mounts_of(container_pid))
    if wanted is None or located is None:
        return None
    found = candidates(*located, mounts_of(pid))
    # A chrooted process's tree is a directory of the container's root file system, not a
    # mount of its own: its files lie under the root it was given.
    in_tree = _under(path, os.readlink(f"/proc/{pid}/root"))
    if in_tree is not None:
        found.append("/" + in_tree)
    return next((c for c in found if _identity(pid, c) == wanted), None)


def view_of(pid: int) -> tuple[str, str]:
    """A process's view: its mount namespace and its root directory (as the host reads
    the link: a chrooted process's root names its directory)."""
    return os.readlink(f"/proc/{pid}/ns/mnt"), os.readlink(f"/proc/{pid}/root")
