"""Bringing one service of a stack up: keep its container when it runs healthy from the
same image and configuration, otherwise make it again (volumes, its one-time init step
unless done, create, start) and wait for its health.

Each service is brought up in a thread of its own (``stack.Stack.up``), with its own
podman client; the start gates say when its dependencies are ready and whether another
service failed first.
"""

from __future__ import annotations

import time
from pathlib import Path

from podman import PodmanClient
from podman.errors import APIError, NotFound

from ipabuild.core.progress import Reporter
from ipabuild.stack.containers import (
    Abandoned,
    existing_volumes,
    run_init,
    state_of,
    stop_and_remove,
    wait_ready,
)
from ipabuild.stack.idranges import IDS_LABEL, userns_of_label
from ipabuild.stack.plan import (
    CONFIG_LABEL,
    SERVICE_LABEL,
    STACK_LABEL,
    ServicePlan,
    config_digest,
)
from ipabuild.stack.podman_api import api_error, health_report
from ipabuild.stack.startgates import StartGates
from ipabuild.stack.takeover import take_over


class ServiceStarter:
    """Brings the services of stack ``stack`` up through ``client``, one call each."""

    def __init__(self, client: PodmanClient, stack: str, report: Reporter,
                 gates: StartGates, health: dict[str, tuple[str, str]] | None = None) -> None:
        self.client = client
        self.stack = stack
        self.report = report
        self.gates = gates
        # container -> (status, what its check said) as last seen healthy here: `up`'s
        # closing table shows these instead of running every check once more.
        self.health = health if health is not None else {}

    def bring_up(self, plan: ServicePlan, secret_names: dict[str, str],
                 hosts: dict[str, str]) -> None:
        """Keep the service's container if it is as it should be, else make it again
        (volumes, the init step once, create, start) and wait until it is healthy."""
        started = time.monotonic()
        name = plan.service.name
        args = plan.create_args(secret_names, hosts)
        digest = config_digest(self.client.images.get(plan.image).id, args)
        args["labels"][CONFIG_LABEL] = digest
        if self._keep(plan, digest):
            self.report(name, "already healthy with this image and configuration: kept")
            self.gates.healthy(name)
            return
        self._ensure_volumes(plan)
        self._take_over_volumes(plan)
        if plan.service.init is not None and not self._init_done(plan):
            self.report(name, "running its one-time init step")
            run_init(self.client, plan, secret_names, hosts)
            self._mark_init_done(plan)
        if self.gates.failed:
            raise Abandoned()
        self.report(name, f"starting as UID {plan.runtime_uid}"
                    + (" in its own user namespace" if plan.in_userns else ""))
        try:
            self.client.containers.create(plan.image, **args).start()
        except APIError as exc:
            raise api_error(exc, f"starting {name}") from exc
        self.gates.started(name)
        self.health[plan.container] = wait_ready(self.client, plan, self.gates)
        self.gates.healthy(name)
        self.report(name, f"healthy after {time.monotonic() - started:.1f}s")

    def _keep(self, plan: ServicePlan, digest: str) -> bool:
        """Keep the service's container if it runs healthy from the same image and
        configuration (``up`` of a running stack changes nothing); otherwise remove it, so
        a stopped, crashed, stuck ("created") or outdated one is made again."""
        try:
            container = self.client.containers.get(plan.container)
        except NotFound:
            return False
        if state_of(container) == "running" and container.labels.get(CONFIG_LABEL) == digest:
            checked = health_report(self.client, plan.container)
            if checked[0] in ("healthy", "none"):
                self.health[plan.container] = checked
                return True
        stop_and_remove(container)
        return False

    def _init_marker(self, plan: ServicePlan) -> str:
        return plan.volume("init-done")

    def _init_done(self, plan: ServicePlan) -> bool:
        """Whether the service's init step completed on these volumes: an empty volume
        made after it succeeded, so an interrupted ``up`` runs it again (the steps say
        themselves when they find half-done work), and ``down --volumes`` removes it."""
        return bool(self.client.volumes.exists(self._init_marker(plan)))

    def _mark_init_done(self, plan: ServicePlan) -> None:
        self.client.volumes.create(self._init_marker(plan),
                                   labels={STACK_LABEL: self.stack,
                                           "io.ipabuild.role": "init-done"})

    def _take_over_volumes(self, plan: ServicePlan) -> None:
        """Volumes this service made in a user namespace it no longer runs in (see
        ``takeover``): their files become its host UID's, group 0, before it starts."""
        if plan.in_userns:
            return
        for name, attrs in existing_volumes(self.client, plan):
            old = userns_of_label((attrs.get("Labels") or {}).get(IDS_LABEL, ""))
            if old is None:
                continue
            changed = take_over(Path(attrs["Mountpoint"]), old, plan.runtime_uid)
            if changed:
                self.report(plan.service.name, f"took over {changed} file(s) of volume "
                            f"{name}, made in its former user namespace (host IDs "
                            f"{old}): now UID "
                            f"{plan.runtime_uid}, GID 0, as it runs without one")

    def _ensure_volumes(self, plan: ServicePlan) -> bool:
        """Create the service's volumes; True when any was new."""
        fresh = False
        for volume in plan.service.volumes:
            if not self.client.volumes.exists(plan.volume(volume.name)):
                self.client.volumes.create(plan.volume(volume.name),
                                           labels={STACK_LABEL: self.stack,
                                                   SERVICE_LABEL: plan.service.name,
                                                   IDS_LABEL: plan.ids_label})
                fresh = True
        return fresh
