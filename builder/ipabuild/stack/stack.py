"""The run stage: start, inspect and stop a split stack with podman (through podman-py).

A stack is one podman network, one container per service (aliases ``<service>`` and
``<service>.<domain>``), named volumes per service and podman secrets, all named
``ipabuild-<stack>-…`` and labelled ``io.ipabuild.stack`` so two stacks never clash.

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
import hashlib
import ipaddress
import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from podman import PodmanClient
from podman.errors import APIError, NotFound

from ipabuild.core.errors import IpabuildError, UsageError
from ipabuild.core.locks import held, stack_lock
from ipabuild.core.resolver import DNS_OPTIONS
from ipabuild.spec.model import Project, Service
from ipabuild.spec.ordering import dependency_order
from ipabuild.stack.idranges import IDS_LABEL, Registry, StackIds, volume_ids
from ipabuild.stack.idusage import foreign_ranges
from ipabuild.stack.podman_api import api_error, health_report, healthcheck, log_tail, store_secrets
from ipabuild.stack.secrets import SecretFiles
from ipabuild.stack.startgates import StartGates

STACK_LABEL = "io.ipabuild.stack"
SERVICE_LABEL = "io.ipabuild.service"
STACK_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}")
READY_MARGIN = 30
FIRST_HOST = 10  # services' fixed addresses: subnet host 10, 11, ...
STOP_GRACE_SECONDS = 30  # ns-slapd and Tomcat flush and close cleanly well within this

Reporter = Callable[[str, str], None]


class ServiceNotReady(IpabuildError):
    """A service failed its readiness wait; carries its last log lines."""

    def __init__(self, service: str, reason: str, logs: str) -> None:
        super().__init__(f"{service}: {reason}\n--- last log lines of {service} ---\n{logs}\n"
                         f"(the other containers are left running for inspection; "
                         f"`ipabuild down` removes them)")


@dataclass(frozen=True)
class ServicePlan:
    """Everything needed to create one service's container."""

    stack: str
    service: Service
    image: str
    domain: str
    network: str
    ids: StackIds | None = None  # the stack's host IDs, allocated by ``Stack.up``

    @property
    def container(self) -> str:
        return f"ipabuild-{self.stack}-{self.service.name}"

    @property
    def in_userns(self) -> bool:
        """Runs in a user namespace of its own: a monolith, or a root init step's service."""
        if self.service.mode == "monolithic":
            return True
        return bool(self.service.init and self.service.init.root_in_user_namespace)

    @property
    def runtime_uid(self) -> int:
        """UID inside the container: the image's own USER when in a private userns."""
        return self.service.user if self.in_userns else self._ids.uids[self.service.name]

    @property
    def _ids(self) -> StackIds:
        if self.ids is None:
            raise IpabuildError(f"{self.service.name}: no host IDs allocated (Stack.up "
                                "allocates them before creating containers)")
        return self.ids

    @property
    def ids_label(self) -> str:
        """What this service's volumes are owned by, for ``IDS_LABEL``."""
        if self.in_userns:
            userns = self._ids.userns
            assert userns is not None
            return f"userns={userns.start}:{userns.size}"
        return f"uid={self.runtime_uid}"

    def volume(self, name: str) -> str:
        return f"ipabuild-{self.stack}-{self.service.name}-{name}"

    def shared_volume(self, service: str, name: str) -> str:
        """Another service's volume of this stack (same name as that service's own)."""
        return f"ipabuild-{self.stack}-{service}-{name}"

    def names(self) -> list[str]:
        """The host names this service answers to: each alias, short and under the domain."""
        return [name for alias in [self.service.name, *self.service.aliases]
                for name in (alias, f"{alias}.{self.domain}")]

    def create_args(self, secret_names: dict[str, str], hosts: dict[str, str]) -> dict:
        """podman-py create arguments; ``hosts`` maps every stack host name to its fixed
        address (see ``fixed_hosts``)."""
        service = self.service
        tmpfs = sorted({*service.tmpfs, *(["/run/secrets"] if service.secrets else [])})
        args: dict = {
            "name": self.container,
            "hostname": f"{service.name}.{self.domain}",
            "user": f"{self.runtime_uid}:0",
            "read_only": service.read_only_root,
            "mounts": [{"type": "tmpfs", "target": path} for path in tmpfs],
            "volumes": {**{self.volume(v.name): {"bind": v.path, "mode": "rw"}
                           for v in service.volumes},
                        **{self.shared_volume(v.service, v.volume): {"bind": v.path, "mode": "rw"}
                           for v in service.shared_volumes}},
            "secrets": [{"source": secret_names[s.name], "target": s.name,
                         "uid": self.runtime_uid, "gid": 0, "mode": 0o440}
                        for s in service.secrets],
            "networks": {self.network: {"aliases": self.names(),
                                        "static_ips": [hosts[service.name]]}},
            "extra_hosts": hosts,
            "labels": {STACK_LABEL: self.stack, SERVICE_LABEL: service.name,
                       "io.ipabuild.mode": service.mode},
            # A monolith keeps podman's default (namespaced) capabilities: its supervisor
            # and daemons run as root inside, as upstream's container does.
            **({} if service.mode == "monolithic" else {"cap_drop": ["ALL"]}),
            "no_new_privileges": True,  # podman-py maps security_opt to SELinux options
            "dns_opt": DNS_OPTIONS,
            "ports": {f"{p.port}/{p.protocol}": ("127.0.0.1", 0) for p in service.ports},
            "init": True,
            # A crashed daemon comes back by itself (Kubernetes' restartPolicy does the
            # same in a cluster); `ipabuild down` stops it for good. The count caps a
            # crash loop: podman restarts without backing off.
            "restart_policy": {"Name": "on-failure", "MaximumRetryCount": RESTART_LIMIT},
        }
        if service.sysctls:
            args["sysctls"] = dict(service.sysctls)
        if self.in_userns:
            userns = self._ids.userns
            assert userns is not None
            mapping = [{"container_id": 0, "host_id": userns.start, "size": userns.size}]
            args["userns_mode"] = "private"
            args["idmappings"] = {"UIDMap": mapping, "GIDMap": mapping}
        return args


RESTART_LIMIT = 10
# On each container: a digest of its image and create arguments, so `up` knows whether
# a running container is what it would create now.
CONFIG_LABEL = "io.ipabuild.config"


def config_digest(image_id: str, args: dict) -> str:  # type: ignore[type-arg]
    """sha256 of the image ID and the create arguments (canonical JSON)."""
    document = json.dumps({"image": image_id, "args": args}, sort_keys=True, default=str)
    return hashlib.sha256(document.encode()).hexdigest()


def service_addresses(subnet: str, services: list[str]) -> dict[str, str]:
    """Each service → its fixed address in ``subnet``: host FIRST_HOST onwards in the
    given order, clear of the gateway (host 1) and of the addresses podman hands out
    from the bottom of the range."""
    network = ipaddress.ip_network(subnet)
    if FIRST_HOST + len(services) >= network.num_addresses - 1:
        raise UsageError(f"network {subnet} is too small for {len(services)} services",
                         "remove the stack's network (`ipabuild down`) and start again")
    return {name: str(network.network_address + FIRST_HOST + index)
            for index, name in enumerate(services)}


def fixed_hosts(subnet: str, plans: list[ServicePlan]) -> dict[str, str]:
    """Every host name of every service (``ServicePlan.names``) → its fixed address."""
    addresses = service_addresses(subnet, [plan.service.name for plan in plans])
    return {name: addresses[plan.service.name] for plan in plans for name in plan.names()}


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


class Stack:
    """A named split stack on this host."""

    def __init__(self, client: PodmanClient, project: Project, services: list[Service],
                 name: str, tag: str, uids: Mapping[str, int] | None = None,
                 client_factory: Callable[[], PodmanClient] | None = None) -> None:
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
        self.plans = [ServicePlan(name, s, f"{project.image.prefix}/{s.name}:{tag}",
                                  project.domain, self.network)
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
            if _state(listed) == "running":
                inspected = self.client.containers.get(listed.id)
                return sorted(inspected.attrs.get("HostConfig", {}).get("ExtraHosts") or [])
        return []

    def missing_images(self) -> list[str]:
        return [p.image for p in self.plans if not self.client.images.exists(p.image)]

    def status(self) -> list[StackStatus]:
        rows = []
        for plan in self.plans:
            try:
                container = self.client.containers.get(plan.container)
            except NotFound:
                rows.append(StackStatus(plan.service.name, plan.container, "absent", "-"))
                continue
            state = container.attrs["State"]
            running = state.get("Status") == "running"
            pid = int(state.get("Pid") or 0)
            ports = {port: f"{b[0]['HostIp']}:{b[0]['HostPort']}"
                     for port, b in (container.attrs["NetworkSettings"]["Ports"] or {}).items()
                     if b}
            host_uid = container_uid = None
            if running and pid:
                host_uid, container_uid = _uids(pid)
            rows.append(StackStatus(
                plan.service.name, plan.container, state.get("Status", "?"),
                healthcheck(self.client, plan.container) if running else "-",
                ports, pid, container_uid, host_uid))
        return rows

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
        return self.status()

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
            self._bring_up(plan, secret_names, hosts, report, gates)
        except _Abandoned:
            pass
        except BaseException as exc:  # re-raised in the main thread by gates.wait_all
            gates.fail(exc)
        finally:
            if self._client_factory is not None:
                self._local.client.close()
                self._local.client = None

    def _bring_up(self, plan: ServicePlan, secret_names: dict[str, str],
                  hosts: dict[str, str], report: Reporter, gates: StartGates) -> None:
        started = time.monotonic()
        name = plan.service.name
        args = plan.create_args(secret_names, hosts)
        digest = config_digest(self.client.images.get(plan.image).id, args)
        args["labels"][CONFIG_LABEL] = digest
        if self._keep(plan, digest):
            report(name, "already healthy with this image and configuration: kept")
            gates.healthy(name)
            return
        self._ensure_volumes(plan)
        if plan.service.init is not None and not self._init_done(plan):
            report(name, "running its one-time init step")
            self._run_init(plan, secret_names, hosts)
            self._mark_init_done(plan)
        if gates.failed:
            raise _Abandoned()
        report(name, f"starting as UID {plan.runtime_uid}"
               + (" in its own user namespace" if plan.in_userns else ""))
        try:
            self.client.containers.create(plan.image, **args).start()
        except APIError as exc:
            raise api_error(exc, f"starting {name}") from exc
        gates.started(name)
        self._wait_ready(plan, gates)
        gates.healthy(name)
        report(name, f"healthy after {time.monotonic() - started:.1f}s")

    def _keep(self, plan: ServicePlan, digest: str) -> bool:
        """Keep the service's container if it runs healthy from the same image and
        configuration (``up`` of a running stack changes nothing); otherwise remove it, so
        a stopped, crashed, stuck ("created") or outdated one is made again."""
        try:
            container = self.client.containers.get(plan.container)
        except NotFound:
            return False
        if (_state(container) == "running"
                and container.labels.get(CONFIG_LABEL) == digest
                and healthcheck(self.client, plan.container) in ("healthy", "none")):
            return True
        self._stop(container)
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
                                   labels={STACK_LABEL: self.name, "io.ipabuild.role": "init-done"})

    def _allocate_ids(self) -> StackIds:
        """The stack's host IDs from the registry, keeping what its volumes are owned by."""
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
            requested=self.requested_uids)

    def _volume_evidence(self) -> StackIds:
        """The host IDs the stack's existing volumes were made for (see ``volume_ids``)."""
        found = StackIds()
        for plan in self.plans:
            for volume in plan.service.volumes:
                try:
                    attrs = self.client.volumes.get(plan.volume(volume.name)).attrs
                except NotFound:
                    continue
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

    def _ensure_volumes(self, plan: ServicePlan) -> bool:
        """Create the service's volumes; True when any was new."""
        fresh = False
        for volume in plan.service.volumes:
            if not self.client.volumes.exists(plan.volume(volume.name)):
                self.client.volumes.create(plan.volume(volume.name),
                                           labels={STACK_LABEL: self.name,
                                                   SERVICE_LABEL: plan.service.name,
                                                   IDS_LABEL: plan.ids_label})
                fresh = True
        return fresh

    def _run_init(self, plan: ServicePlan, secret_names: dict[str, str],
                  hosts: dict[str, str]) -> None:
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
            _remove_quietly(self.client.containers.get(args["name"]))
        container = self.client.containers.create(plan.image, **args)
        container.start()
        status = container.wait()
        logs = log_tail(self.client, container.name, 30)
        _remove_quietly(container)
        if status != 0:
            raise ServiceNotReady(plan.service.name, f"init step exited {status}", logs)

    def _wait_ready(self, plan: ServicePlan, gates: StartGates) -> None:
        check = plan.service.healthcheck
        timeout = (check.start_period if check else 30) + READY_MARGIN
        deadline = time.monotonic() + timeout
        said = ""
        while time.monotonic() < deadline:
            if gates.failed:
                raise _Abandoned()
            container = self.client.containers.get(plan.container)
            if container.status not in ("running", "created", "configured"):
                raise ServiceNotReady(plan.service.name, f"exited ({container.status})",
                                      log_tail(self.client, plan.container))
            if check is None:
                return
            status, output = health_report(self.client, plan.container)
            if status == "healthy":
                return
            said = output.splitlines()[-1] if output else said
            time.sleep(0.5)
        reason = f"not healthy within {timeout}s"
        raise ServiceNotReady(plan.service.name,
                              f"{reason}; its health check says: {said}" if said else reason,
                              log_tail(self.client, plan.container))

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
        for volume in stack_volumes:
            volume.remove(force=True)
            removed.append(f"volume {volume.name}")
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
            self._stop(container)
            removed.append(container.name)
        return removed

    @staticmethod
    def _stop(container) -> None:  # type: ignore[no-untyped-def]
        """Stop with time for a clean shutdown, then remove."""
        # ValueError: podman answers 304 with an empty body for an exited container.
        with contextlib.suppress(APIError, ValueError):
            container.stop(timeout=STOP_GRACE_SECONDS)
        _remove_quietly(container)


class _Abandoned(Exception):
    """Another service failed first: this one's thread stops waiting (that failure is
    what `up` reports; this container is left as it is, like the others)."""


def _remove_quietly(container) -> None:  # type: ignore[no-untyped-def]
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


def _state(container) -> str:  # type: ignore[no-untyped-def]
    """A container's state from a list entry (a string) or a full inspect (a dict)."""
    state = container.attrs.get("State")
    return str(state.get("Status") if isinstance(state, dict) else state)


def _uids(pid: int) -> tuple[int | None, int | None]:
    """(host UID, UID inside the container) of a process, from /proc."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        uid_map = Path(f"/proc/{pid}/uid_map").read_text().split()
    except OSError:
        return None, None
    host = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
    inside, outside, size = (int(x) for x in uid_map[:3])
    return host, (host - outside + inside if outside <= host < outside + size else None)
