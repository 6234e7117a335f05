"""Which host IDs containers use now: what the registry must avoid and ``verify`` compares.

A container in a user namespace of its own uses the outside half of its uid_map and
gid_map: read from /proc while it runs (the kernel's word), from podman's inspect data
(``HostConfig.IDMappings``) while it does not, so a stopped ``--userns=auto``
container of another tool still counts. A container in the host's namespace (the
identity map) uses the host IDs its processes run as: its configured numeric user.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from podman import PodmanClient
from podman.errors import NotFound

from ipabuild.core.procfacts import IdRange, ProcessFacts
from ipabuild.stack.idranges import Interval

FULL_RANGE = 4_294_967_295  # the identity map's size: the host's own user namespace


def _proc_map(pid: int, kind: str, owner: str) -> list[Interval] | None:
    """Outside ranges of /proc/PID/{uid,gid}_map; None for the identity map."""
    try:
        rows = [row.split() for row in Path(f"/proc/{pid}/{kind}").read_text().splitlines()]
    except OSError:
        return []
    ranges = [Interval(int(row[1]), int(row[2]), owner) for row in rows if len(row) == 3]
    if any(r.size == FULL_RANGE for r in ranges):
        return None
    return ranges


def _inspect_map(entries: list[str] | None, owner: str) -> list[Interval]:
    """Outside ranges of podman's ``inside:outside:size`` strings."""
    ranges = []
    for entry in entries or []:
        parts = entry.split(":")
        if len(parts) == 3 and all(p.isdigit() for p in parts):
            ranges.append(Interval(int(parts[1]), int(parts[2]), owner))
    return ranges


def container_ranges(attrs: dict[str, Any]) -> list[Interval]:
    """Host UIDs and GIDs (one space) one container uses, from its inspect document."""
    owner = f"container {attrs.get('Name', '?').lstrip('/')}"
    state = attrs.get("State") or {}
    pid = int(state.get("Pid") or 0) if state.get("Status") == "running" else 0
    if pid:
        uids, gids = _proc_map(pid, "uid_map", owner), _proc_map(pid, "gid_map", owner)
        if uids is not None and gids is not None:
            return uids + gids
    else:
        mappings = (attrs.get("HostConfig") or {}).get("IDMappings") or {}
        mapped = (_inspect_map(mappings.get("UidMap"), owner)
                  + _inspect_map(mappings.get("GidMap"), owner))
        if mapped:
            return mapped
    user = str((attrs.get("Config") or {}).get("User") or "")
    return [Interval(int(part), 1, owner) for part in user.split(":")[:2]
            if part.isdigit() and int(part) != 0]


def foreign_ranges(client: PodmanClient, label: str, stack: str) -> list[Interval]:
    """What every container on the host uses, except the containers of ``stack``."""
    ranges = []
    for listed in client.containers.list(all=True):
        if (listed.labels or {}).get(label) == stack:
            continue
        with contextlib.suppress(NotFound):  # removed since the listing
            ranges += container_ranges(client.containers.get(listed.id).attrs)
    return ranges


def process_ranges(processes: list[ProcessFacts], kind: str) -> list[Interval]:
    """Host ``kind`` ("uid" or "gid") ranges a container's processes are mapped onto:
    the map's outside half in a namespace of their own, else the IDs they run as (host
    GID 0, shared by design without a namespace, is reported elsewhere)."""
    found: set[Interval] = set()
    for p in processes:
        if p.own_user_namespace:
            mapping: list[IdRange] = p.uid_map if kind == "uid" else p.gid_map
            found.update(Interval(r.outside, r.size) for r in mapping)
        else:
            ids = p.uids_host if kind == "uid" else [g for g in p.gids_host if g != 0]
            found.update(Interval(i, 1) for i in ids)
    return sorted(found)
