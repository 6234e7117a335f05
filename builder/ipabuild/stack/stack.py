"""The run stage's stack: a named split stack on this host, started, inspected and stopped
with podman (through podman-py).

A stack is one podman network, one container per service (aliases ``<service>`` and
``<service>.<domain>``), named volumes per service and podman secrets, all named
``ipabuild-<stack>-…`` and labelled ``io.ipabuild.stack`` so two stacks never clash.
What each container is made from is its ``plan.ServicePlan``; ``bringup`` brings one
service up, ``containers`` drives one container.

UIDs: each split service runs as a host UID allocated to it in the host ID registry
(``idranges``; stable across ``down``/``up``, which 389-ds's owner-only files need;
arbitrary like OpenShift's). A service whose spec has an ``init`` step needing root
runs, init and daemon alike, in the stack's own user-namespace range from the same
registry: container root there is an unprivileged host UID. Volumes carry the IDs they
were made for in a label, so a lost registry is rebuilt from them. ``up`` and ``down``
hold the stack's lock: a second one at the same time fails at once, naming the holder.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from podman import PodmanClient
from podman.errors import APIError, NotFound

from ipabuild.core.errors import IpabuildError, UsageError
from ipabuild.core.locks import held, stack_lock
from ipabuild.core.progress import Reporter
from ipabuild.spec.model import Project, Service
from ipabuild.spec.ordering import dependency_order
from ipabuild.stack.bringup import ServiceStarter
from ipabuild.stack.containers import (
    Abandoned,
    existing_volumes,
    process_uids,
    settling,
    state_of,
    stop_and_remove,
    wait_ready,
)
from ipabuild.stack.idranges import IDS_LABEL, Registry, StackIds, volume_ids
from ipabuild.stack.idusage import foreign_ranges
from ipabuild.stack.plan import STACK_LABEL, STACK_NAME, ServicePlan, fixed_hosts
from ipabuild.stack.podman_api import health_report, store_secrets
from ipabuild.stack.secrets import SecretFiles
from ipabuild.stack.startgates import StartGates


@dataclass
class StackStatus:
    """One row of ``ipabuild status``."""

    service: str
    container: str
    state: str
    health: str
    ports: dict[str, str] = field(default_factory=dict)
    host_pid: int = 0
    uid_in_container: int | None = None
    uid_on_host: int | None = None
    # The health check's own line (e.g. the kdc's "PKINIT on, OTP on" or what is missing):
    # the status alone hides a service that is healthy but serves less than it could.
    health_says: str = ""


class Stack:
    """A named split stack on this host."""

    def __init__(self, client: PodmanClient, project: Project, services: list[Service],
                 name: str, tag: str, uids: Mapping[str, int] | None = None,
                 client_factory: Callable[[], PodmanClient] | None = None,
                 environment: Mapping[str, Mapping[str, str]] | None = None) -> None:
        if not STACK_NAME.fullmatch(name):
            raise UsageError(f"invalid stack name {name!r}",
                             "use up to 63 letters, digits, '.', '_' or '-', "
                             "starting with a letter or digit")
        self._client = client
        # `up` brings services up in threads, each with a client of its own when a
        # factory is given (a requests session is not meant to be shared by threads).
        self._client_factory = client_factory
        self._local = threading.local()
        self.project = project
        self.name = name
        self.tag = tag
        self.network = f"ipabuild-{name}"
        self.requested_uids = dict(uids or {})  # service -> host UID it must run as
        self._health_seen: dict[str, tuple[str, str]] = {}  # `up`: container -> report
        added = environment or {}
        mode = "monolithic" if any(s.mode == "monolithic" for s in services) else "split"
        self.plans = [ServicePlan(name, s, f"{project.image.prefix}/{s.name}:{tag}",
                                  project.domain, self.network,
                                  server_name=project.server_name,
                                  environment=tuple(sorted(added.get(s.name, {}).items())),
                                  stack_mode=mode)
                      for s in dependency_order(services)]

    @property
    def client(self) -> PodmanClient:
        """This thread's podman client (see ``_bring_up_when_ready``)."""
        return getattr(self._local, "client", None) or self._client

    # --- queries --------------------------------------------------------------------

    def containers(self) -> list:
        return self.client.containers.list(
            all=True, filters={"label": f"{STACK_LABEL}={self.name}"})

    def host_entries(self) -> list[str]:
        """The fixed ``name:address`` entries of the running stack (what each of its
        containers got from ``up``), for a client container on its network; none when
        nothing runs."""
        for listed in self.containers():
            if state_of(listed) == "running":
                inspected = self.client.containers.get(listed.id)
                return sorted(inspected.attrs.get("HostConfig", {}).get("ExtraHosts") or [])
        return []

    def missing_images(self) -> list[str]:
        return [p.image for p in self.plans if not self.client.images.exists(p.image)]

    def status(self, known: dict[str, tuple[str, str]] | None = None) -> list[StackStatus]:
        """One row per service; the health checks run at the same time (each takes the
        check's own time: run one after another they added up to half a second), except
        where ``known`` has the container's report from a moment ago (``up``)."""
        rows = [self._status_row(plan) for plan in self.plans]
        known = known or {}
        for row in rows:
            if row.state == "running" and row.container in known:
                row.health, row.health_says = known[row.container]
        running = [row for row in rows if row.state == "running" and row.container not in known]
        if running:
            with ThreadPoolExecutor(max_workers=len(running)) as pool:
                reports = list(pool.map(self._health, [row.container for row in running]))
            for row, (health, says) in zip(running, reports, strict=True):
                row.health, row.health_says = health, says
        return rows

    def _health(self, container: str) -> tuple[str, str]:
        """health_report with a client of this thread's own, when there is a factory."""
        if self._client_factory is None:
            return health_report(self._client, container)
        client = self._client_factory()
        try:
            return health_report(client, container)
        finally:
            client.close()

    def _status_row(self, plan: ServicePlan) -> StackStatus:
        """The row without its health (``status`` fills it in)."""
        try:
            container = self.client.containers.get(plan.container)
        except NotFound:
            return StackStatus(plan.service.name, plan.container, "absent", "-")
        state = container.attrs["State"]
        running = state.get("Status") == "running"
        pid = int(state.get("Pid") or 0)
        ports = {port: f"{b[0]['HostIp']}:{b[0]['HostPort']}"
                 for port, b in (container.attrs["NetworkSettings"]["Ports"] or {}).items()
                 if b}
        host_uid = container_uid = None
        if running and pid:
            host_uid, container_uid = process_uids(pid)
        return StackStatus(plan.service.name, plan.container, state.get("Status", "?"), "-",
                           ports, pid, container_uid, host_uid)

    # --- up -------------------------------------------------------------------------

    def _lock(self, command: str) -> contextlib.AbstractContextManager[None]:
        """The stack's own lock: one ``up`` or ``down`` of it at a time, host-wide."""
        return held(stack_lock(self.name), f"stack {self.name!r}",
                    f"wait for that `ipabuild up` or `down` of it to finish before "
                    f"`ipabuild {command} --name {self.name}`; see `ps -p PID`")

    def up(self, secrets: SecretFiles, report: Reporter) -> list[StackStatus]:
        with self._lock("up"):
            return self._up(secrets, report)

    def _up(self, secrets: SecretFiles, report: Reporter) -> list[StackStatus]:
        missing = self.missing_images()
        if missing:
            services = ",".join(m.rsplit("/", 1)[1].split(":")[0] for m in missing)
            tag = "" if self.tag == self.project.image.tag else f" --tag {self.tag}"
            raise UsageError(f"images missing: {', '.join(missing)}",
                             f"build them with `ipabuild images --service {services}{tag}`")
        self._health_seen.clear()
        ids = self._allocate_ids()
        self.plans = [replace(plan, ids=ids) for plan in self.plans]
        hosts = self._ensure_network()
        secret_names = self._ensure_secrets(secrets)
        gates = StartGates(plan.service.name for plan in self.plans)
        workers = [threading.Thread(target=self._bring_up_when_ready, daemon=True,
                                    args=(plan, secret_names, hosts, report, gates),
                                    name=f"up-{plan.service.name}")
                   for plan in self.plans]
        for worker in workers:
            worker.start()
        gates.wait_all()
        return self._settle(report, gates)

    def _settle(self, report: Reporter, gates: StartGates) -> list[StackStatus]:
        """Every service healthy at one moment, not each at its own: a service healthy
        early can have a change to make that a later one set off (the kdc restarts
        krb5kdc once the CA has published its PKINIT certificate; its check says
        ``settling:`` until then). The checks of services whose spec says they settle
        run once more now, and ``up`` waits for each that is not healthy or still
        settling; the others' reports from when they got healthy stand (running every
        check again cost a restart about a second)."""
        for plan in self.plans:
            check = plan.service.healthcheck
            if check is None or not check.settles or plan.container not in self._health_seen:
                continue
            health, says = self._health(plan.container)
            if health == "healthy" and not settling(says):
                self._health_seen[plan.container] = (health, says)
                continue
            report(plan.service.name, f"waiting, its check says: {says or health}")
            started = time.monotonic()
            health, says = wait_ready(self.client, plan, gates, settled=True)
            self._health_seen[plan.container] = (health, says)
            report(plan.service.name, f"{'still settling' if settling(says) else health} "
                                      f"after {time.monotonic() - started:.1f}s more")
        return self.status(self._health_seen)

    def _bring_up_when_ready(self, plan: ServicePlan, secret_names: dict[str, str],
                             hosts: dict[str, str], report: Reporter,
                             gates: StartGates) -> None:
        """One service's thread: wait for its dependencies as its spec says, then bring
        it up; any failure goes to the gates (the first is what `up` raises)."""
        if self._client_factory is not None:
            self._local.client = self._client_factory()
        try:
            for dependency, condition in plan.service.depends_on.items():
                if dependency in gates and not gates.wait(dependency, condition):
                    return
            starter = ServiceStarter(self.client, self.name, report, gates, self._health_seen)
            starter.bring_up(plan, secret_names, hosts)
        except Abandoned:
            pass
        except BaseException as exc:  # re-raised in the main thread by gates.wait_all
            gates.fail(exc)
        finally:
            if self._client_factory is not None:
                self._local.client.close()
                self._local.client = None

    def _allocate_ids(self) -> StackIds:
        """The stack's host IDs and ports from the registry, keeping what its volumes are
        owned by."""
        own_uid = [plan.service.name for plan in self.plans if not plan.in_userns]
        for service in sorted(set(self.requested_uids) - set(own_uid)):
            namespaced = [p.service.name for p in self.plans if p.in_userns]
            raise UsageError(
                f"--uid names {service!r}, which " + (
                    "runs in a user namespace of its own (its UID inside is the image's)"
                    if service in namespaced else "is not a service this stack starts"),
                f"give --uid only for {', '.join(own_uid) or 'no service'}")
        return Registry().allocate(
            self.name, userns=any(plan.in_userns for plan in self.plans),
            services=own_uid, evidence=self._volume_evidence(),
            foreign=lambda: foreign_ranges(self.client, STACK_LABEL, self.name),
            requested=self.requested_uids,
            ports=sorted({plan.port_key(p.port) for plan in self.plans
                          for p in plan.service.ports}),
            port_evidence=self._port_evidence())

    def _port_evidence(self) -> dict[str, int]:
        """The host ports the stack's existing containers are published on."""
        found: dict[str, int] = {}
        for plan in self.plans:
            try:
                container = self.client.containers.get(plan.container)
            except NotFound:
                continue
            bindings = container.attrs.get("HostConfig", {}).get("PortBindings") or {}
            for published, bound in sorted(bindings.items()):
                host_port = str((bound or [{}])[0].get("HostPort", ""))
                if host_port.isdigit():
                    found[plan.port_key(int(published.split("/")[0]))] = int(host_port)
        return found

    def _volume_evidence(self) -> StackIds:
        """The host IDs the stack's existing volumes were made for (see ``volume_ids``)."""
        found = StackIds()
        for plan in self.plans:
            for _name, attrs in existing_volumes(self.client, plan):
                label = str((attrs.get("Labels") or {}).get(IDS_LABEL, ""))
                found.update(volume_ids(label, self.name, plan.service.name, plan.in_userns))
        return found

    def _ensure_network(self) -> dict[str, str]:
        """Create the stack's network; return every service host name → its address.

        Each service gets a fixed address (the 10th host of the subnet onwards, in
        dependency order) and every container an /etc/hosts entry per peer: the daemons
        open connections by name all the time (kdcproxy, httpd's /ca proxy, the KDC and
        the CA to ldap), and podman 4.3's aardvark-dns stops answering for seconds while
        containers come and go (measured: 10 s of unanswered queries, kinit through
        /KdcProxy failing 3 times in 20). DNS stays on for everything else.
        """
        if not self.client.networks.exists(self.network):
            self.client.networks.create(self.network, dns_enabled=True,
                                        labels={STACK_LABEL: self.name})
        subnet = self.client.networks.get(self.network).attrs["subnets"][0]["subnet"]
        return fixed_hosts(subnet, self.plans)

    def _ensure_secrets(self, secrets: SecretFiles) -> dict[str, str]:
        names = {name: f"ipabuild-{self.name}-{name}" for name in secrets.names}
        store_secrets(self.client, {names[n]: secrets.path(n) for n in secrets.names})
        return names

    # --- down -----------------------------------------------------------------------

    def down(self, volumes: bool) -> list[str]:
        """Stop and remove the stack; returns what was removed. With ``volumes`` its
        host IDs go back to the registry: nothing is owned by them any more."""
        with self._lock("down"):
            return self._down(volumes)

    def _down(self, volumes: bool) -> list[str]:
        removed = self._remove_containers()
        stack_volumes = (self.client.volumes.list(filters={"label": f"{STACK_LABEL}={self.name}"})
                         if volumes else [])
        registry = Registry()
        if (not removed and not self.client.networks.exists(self.network) and not stack_volumes
                and not (volumes and self.name in registry.recorded())):
            raise UsageError(f"no stack named {self.name!r} on this host",
                             "see `podman ps -a --filter label=io.ipabuild.stack`")
        if self.client.networks.exists(self.network):
            self.client.networks.get(self.network).remove(force=True)
        for secret in self.client.secrets.list():
            if secret.name.startswith(f"ipabuild-{self.name}-"):
                secret.remove()
        kept: list[str] = []
        for volume in stack_volumes:
            try:
                volume.remove(force=True)
            except APIError as exc:  # e.g. podman's lock table out of step with a volume
                kept.append(f"{volume.name}: {exc.explanation or exc}")
                continue
            removed.append(f"volume {volume.name}")
        if kept:
            # The host IDs stay recorded: the volumes left are still owned by them.
            raise IpabuildError(
                f"removed {len(removed)} item(s) of stack {self.name!r}, but podman could "
                f"not remove {len(kept)} volume(s): " + "; ".join(kept) + " (fix: when "
                "podman reports lock errors, `podman system renumber` rebuilds its lock "
                f"table; then `ipabuild down --name {self.name} --volumes` again)")
        if volumes and (released := registry.release(self.name)) is not None:
            removed.append(f"host IDs {released.describe()} (back to the registry)")
        return removed

    def _remove_containers(self) -> list[str]:
        """Stop dependants before what they depend on (http, kdc, ca, then ldap), each
        with time for a clean shutdown: the directory must flush last, not be killed
        under a CA that is still writing to it."""
        rank = {plan.container: index for index, plan in enumerate(self.plans)}
        removed = []
        for container in sorted(self.containers(),
                                key=lambda c: rank.get(c.name, len(rank)), reverse=True):
            stop_and_remove(container)
            removed.append(container.name)
        return removed
