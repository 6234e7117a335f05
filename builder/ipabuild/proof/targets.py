"""Find what runs: the containers of ipabuild stacks and their process trees.

Shared by ``probe``, ``verify`` and ``posture`` so that all three look at the same facts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from podman import PodmanClient
from podman.errors import NotFound

from ipabuild.core.errors import IpabuildError, UsageError
from ipabuild.core.procfacts import ProcessFacts, descendants, process_facts
from ipabuild.stack.plan import SERVICE_LABEL, STACK_LABEL


@dataclass
class ContainerFacts:
    """A running container and the measured facts of every one of its processes."""

    name: str
    stack: str
    service: str
    mode: str
    image: str
    init_pid: int
    processes: list[ProcessFacts] = field(default_factory=list)
    read_only_root: bool = False
    privileged: bool = False
    env_names: list[str] = field(default_factory=list)
    volumes: dict[str, str] = field(default_factory=dict)  # named volume -> mount point


def _measure(pid: int) -> list[ProcessFacts]:
    facts = []
    for child in descendants(pid):
        try:
            facts.append(process_facts(child))
        except OSError:
            continue  # exited between listing and reading
    return facts


def container_facts(client: PodmanClient, name: str) -> ContainerFacts:
    """Measure one running container by name or ID."""
    try:
        container = client.containers.get(name)
    except NotFound as exc:
        raise UsageError(f"no container named {name!r}",
                         "see `podman ps` or `ipabuild status`") from exc
    attrs = container.attrs
    pid = int(attrs["State"].get("Pid") or 0)
    if not pid or attrs["State"].get("Status") != "running" or _exited(container, pid):
        raise IpabuildError(f"container {name!r} is not running (state "
                            f"{container.attrs['State'].get('Status')}); start it and probe "
                            "again")
    if not Path(f"/proc/{pid}").exists():
        raise UsageError(
            f"container {name!r} runs as host PID {pid}, which this PID namespace does not "
            "show: podman started it from another PID namespace (or it has just exited)",
            "run ipabuild where the container's processes are visible, or leave that "
            "stack out with --name")
    labels = attrs["Config"].get("Labels") or {}
    host_config = attrs.get("HostConfig") or {}
    return ContainerFacts(
        name=attrs["Name"].lstrip("/"), stack=labels.get(STACK_LABEL, ""),
        service=labels.get(SERVICE_LABEL, ""), mode=labels.get("io.ipabuild.mode", ""),
        image=attrs.get("ImageName", ""), init_pid=pid, processes=_measure(pid),
        read_only_root=bool(host_config.get("ReadonlyRootfs")),
        privileged=bool(host_config.get("Privileged")),
        env_names=[e.split("=", 1)[0] for e in attrs["Config"].get("Env") or []],
        volumes={m["Name"]: m["Destination"] for m in attrs.get("Mounts") or []
                 if m.get("Type") == "volume" and m.get("Name")},
    )


def _exited(container, pid: int, settle: float = 2.0) -> bool:  # type: ignore[no-untyped-def]
    """True if ``pid`` is gone because the container stopped (podman notices a moment
    later), False while podman still says it runs as ``pid``: then /proc is another PID
    namespace's, or the process is alive."""
    deadline = time.monotonic() + settle
    while not Path(f"/proc/{pid}").exists():
        container.reload()
        state = container.attrs["State"]
        if state.get("Status") != "running" or int(state.get("Pid") or 0) != pid:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)
    return False


def pid_facts(pid: int) -> list[ProcessFacts]:
    """Measure a process tree by host PID."""
    if not Path(f"/proc/{pid}").exists():
        raise IpabuildError(f"no process {pid} on this host (it may have exited)")
    facts = _measure(pid)
    if not facts:
        raise IpabuildError(f"process {pid} vanished while it was being read")
    return facts


def stack_containers(client: PodmanClient, stack: str | None = None,
                     mode: str | None = None) -> list[ContainerFacts]:
    """Every running container of ipabuild stacks (one stack, one mode, or all)."""
    label = f"{STACK_LABEL}={stack}" if stack else STACK_LABEL
    found = []
    for container in client.containers.list(filters={"label": label}):
        facts = container_facts(client, container.name)
        if mode is None or facts.mode == mode:
            found.append(facts)
    return sorted(found, key=lambda c: (c.stack, c.service, c.name))
