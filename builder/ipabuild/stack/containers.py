"""Driving one container with podman-py: an init step, the wait for health, a clean stop
and removal, and what a container's state and UIDs are.

The failures a user sees (``ServiceNotReady``) carry the container's last log lines.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

from podman import PodmanClient
from podman.errors import APIError, NotFound

from ipabuild.core.errors import IpabuildError
from ipabuild.stack.plan import ServicePlan
from ipabuild.stack.podman_api import api_error, health_report, log_tail
from ipabuild.stack.startgates import StartGates

READY_MARGIN = 30
STOP_GRACE_SECONDS = 30  # ns-slapd and Tomcat flush and close cleanly well within this


class ServiceNotReady(IpabuildError):
    """A service failed its readiness wait; carries its last log lines."""

    def __init__(self, service: str, reason: str, logs: str) -> None:
        super().__init__(f"{service}: {reason}\n--- last log lines of {service} ---\n{logs}\n"
                         f"(the other containers are left running for inspection; "
                         f"`ipabuild down` removes them)")


def existing_volumes(client: PodmanClient, plan: ServicePlan) -> Iterator[tuple[str, dict]]:  # type: ignore[type-arg]
    """The service's volumes that exist: each spec name with podman's attributes."""
    for volume in plan.service.volumes:
        try:
            yield volume.name, client.volumes.get(plan.volume(volume.name)).attrs
        except NotFound:
            continue


def run_init(client: PodmanClient, plan: ServicePlan, secret_names: dict[str, str],
             hosts: dict[str, str]) -> None:
    """Run the service's one-time init step in a container of its own and remove it;
    a non-zero exit is a ServiceNotReady with the step's last log lines."""
    assert plan.service.init is not None
    args = plan.create_args(secret_names, hosts)
    args["name"] = f"{plan.container}-init"
    # The service's own address is the daemon's; the init step reaches itself locally.
    args["networks"][plan.network].pop("static_ips")
    args["extra_hosts"] = {**hosts, **dict.fromkeys(plan.names(), "127.0.0.1")}
    args["entrypoint"] = plan.service.init.command[:1]  # the full argv, like K8s `command`
    args["command"] = plan.service.init.command[1:]
    args["labels"] = {**args["labels"], "io.ipabuild.role": "init"}
    args.pop("ports")
    args.pop("restart_policy")  # a one-time step: its failure is reported, never retried
    if plan.service.init.root_in_user_namespace:
        args["user"] = "0:0"
        # Root's capabilities here are those of its own user namespace (chown and
        # friends on its volumes), worthless against the host.
        args.pop("cap_drop")
        for secret in args["secrets"]:
            secret["uid"] = 0
    with contextlib.suppress(NotFound):  # left by an interrupted `up`
        remove_quietly(client.containers.get(args["name"]))
    container = client.containers.create(plan.image, **args)
    container.start()
    status = container.wait()
    logs = log_tail(client, container.name, 30)
    remove_quietly(container)
    if status != 0:
        raise ServiceNotReady(plan.service.name, f"init step exited {status}", logs)


# A health check that passes but whose last line starts with this is healthy and about to
# restart a part of itself that another service's start set off (the kdc once the CA has
# published its PKINIT certificate). Probes take it as healthy; `ipabuild up` waits it out.
SETTLING = "settling:"


def settling(output: str) -> bool:
    """Whether a passing check's output says the service is about to change."""
    lines = output.strip().splitlines()
    return bool(lines) and lines[-1].startswith(SETTLING)


def wait_ready(client: PodmanClient, plan: ServicePlan, gates: StartGates,
               settled: bool = False) -> tuple[str, str]:
    """Wait until the service's container is healthy (or running, without a health
    check); it exiting or staying unhealthy past its start period is a ServiceNotReady.
    Another service's failure (``gates.failed``) abandons the wait. ``settled``: also
    until its check stops saying ``settling:``; still settling at the end is no failure
    (the service works): the last report is returned as it is."""
    check = plan.service.healthcheck
    timeout = (check.start_period if check else 30) + READY_MARGIN
    deadline = time.monotonic() + timeout
    said = ""
    last = ("", "")
    while time.monotonic() < deadline:
        if gates.failed:
            raise Abandoned()
        container = client.containers.get(plan.container)
        if container.status not in ("running", "created", "configured"):
            raise ServiceNotReady(plan.service.name, f"exited ({container.status})",
                                  log_tail(client, plan.container))
        if check is None:
            return "none", ""
        status, output = health_report(client, plan.container)
        if status == "healthy" and not (settled and settling(output)):
            return status, output
        if status == "healthy":
            last = (status, output)
        said = output.splitlines()[-1] if output else said
        time.sleep(0.25)  # a healthy service is seen a quarter second after
    if last[0]:
        return last
    reason = f"not healthy within {timeout}s"
    raise ServiceNotReady(plan.service.name,
                          f"{reason}; its health check says: {said}" if said else reason,
                          log_tail(client, plan.container))


def stop_and_remove(container) -> None:  # type: ignore[no-untyped-def]
    """Stop with time for a clean shutdown, then remove."""
    # ValueError: podman answers 304 with an empty body for an exited container.
    with contextlib.suppress(APIError, ValueError):
        container.stop(timeout=STOP_GRACE_SECONDS)
    remove_quietly(container)


class Abandoned(Exception):
    """Another service failed first: this one's thread stops waiting (that failure is
    what `up` reports; this container is left as it is, like the others)."""


def remove_quietly(container) -> None:  # type: ignore[no-untyped-def]
    """Remove a finished container; podman 4.3 reports a just-killed container's shm
    busy for a moment ("unlinkat .../userdata/shm: device or resource busy"), so try
    for a few seconds; the last failure is raised (a later create would fail on the
    name with a worse message)."""
    for attempt in range(10):
        try:
            container.remove(force=True)
            return
        except NotFound:
            return
        except APIError as exc:
            if attempt == 9:
                raise api_error(exc, f"removing container {container.name}") from exc
            time.sleep(0.5)


def state_of(container) -> str:  # type: ignore[no-untyped-def]
    """A container's state from a list entry (a string) or a full inspect (a dict)."""
    state = container.attrs.get("State")
    return str(state.get("Status") if isinstance(state, dict) else state)


def process_uids(pid: int) -> tuple[int | None, int | None]:
    """(host UID, UID inside the container) of a process, from /proc."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        uid_map = Path(f"/proc/{pid}/uid_map").read_text().split()
    except OSError:
        return None, None
    host = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
    inside, outside, size = (int(x) for x in uid_map[:3])
    return host, (host - outside + inside if outside <= host < outside + size else None)
