"""Stacks on disjoint host ID ranges, measured from the kernel's uid_map and gid_map.

Comparing the UIDs processes run as right now is not enough: a namespace maps a whole
range, and a process may switch to any ID in it. So each container's range is the
outside half of its maps (or, in the host's namespace, the host IDs it runs as), and
no two stacks, nor a stack and any other container on the host, may share one ID.
"""

from __future__ import annotations

from ipabuild.proof.targets import ContainerFacts
from ipabuild.stack.idranges import Interval
from ipabuild.stack.idusage import process_ranges


def _owner(container: ContainerFacts) -> str:
    return f"stack {container.stack}" if container.stack else f"container {container.name}"


def _overlaps(first: list[Interval], second: list[Interval]) -> list[str]:
    return [f"{a} and {b}" for a in first for b in second if a.overlaps(b)]


def test_stacks_map_disjoint_host_id_ranges(all_containers: list[ContainerFacts],
                                            host_containers: list[ContainerFacts]) -> None:
    """Every selected container against every running container of another owner."""
    problems = []
    for mine in all_containers:
        for other in host_containers:
            if _owner(other) == _owner(mine):
                continue
            for kind in ("uid", "gid"):
                shared = _overlaps(process_ranges(mine.processes, kind),
                                   process_ranges(other.processes, kind))
                if shared:
                    problems.append(f"{mine.name} ({_owner(mine)}) and {other.name} "
                                    f"({_owner(other)}) share host {kind}s: {shared[:3]}")
    assert not problems, "; ".join(problems[:10])


def test_ranges_were_measured(all_containers: list[ContainerFacts]) -> None:
    """The check above is vacuous if no range could be read: refuse that."""
    assert all(process_ranges(c.processes, "uid") for c in all_containers), (
        [c.name for c in all_containers if not process_ranges(c.processes, "uid")])
