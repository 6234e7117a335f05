"""What a stack's containers are made from: one ``ServicePlan`` per service (its names,
volumes, host IDs and podman create arguments), the services' fixed addresses, and the
labels that mark what belongs to a stack.

Pure data: nothing here talks to podman, so a plan is unit-tested without containers.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from ipabuild.core.errors import IpabuildError
from ipabuild.core.resolver import DNS_OPTIONS, NETAVARK_DNS_SEARCH
from ipabuild.spec.model import Service
from ipabuild.spec.routes import fixed_hosts as routes_fixed_hosts
from ipabuild.spec.routes import host_names
from ipabuild.stack.hostports import LOOPBACK
from ipabuild.stack.idranges import StackIds

STACK_LABEL = "io.ipabuild.stack"
SERVICE_LABEL = "io.ipabuild.service"
STACK_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}")


@dataclass(frozen=True)
class ServicePlan:
    """Everything needed to create one service's container."""

    stack: str
    service: Service
    image: str
    domain: str
    network: str
    ids: StackIds | None = None  # the stack's host IDs, allocated by ``Stack.up``
    server_name: str = ""  # the project's server name (answered by a routed service)
    # Environment given to `up --env` on top of the image's (e.g. a test's short renewal
    # times); part of the create arguments, so a change makes the container again.
    environment: tuple[tuple[str, str], ...] = ()
    # The stack's mode, labelled on each container (posture and verify group by it): a
    # monolithic stack's proxy in front of the monolith belongs to that mode.
    stack_mode: str = "split"

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

    def port_key(self, port: int) -> str:
        """The registry's key for this service's container ``port``."""
        return f"{self.service.name}:{port}"

    def host_port(self, port: int) -> int:
        """The host port this service's container ``port`` is published on."""
        try:
            return self._ids.ports[self.port_key(port)]
        except KeyError:
            raise IpabuildError(f"{self.service.name}: no host port allocated for its port "
                                f"{port} (Stack.up allocates them)") from None

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
        """The host names this service answers to (``routes.host_names``)."""
        return host_names(self.service, self.domain, self.server_name)

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
            # A monolith's supervisor hands each daemon its own copy: root's alone here.
            "secrets": [{"source": secret_names[s.name], "target": s.name,
                         "uid": self.runtime_uid, "gid": 0,
                         "mode": 0o400 if service.runs else 0o440}
                        for s in service.secrets],
            "networks": {self.network: {"aliases": self.names(),
                                        "static_ips": [hosts[service.name]]}},
            "extra_hosts": hosts,
            "labels": {STACK_LABEL: self.stack, SERVICE_LABEL: service.name,
                       "io.ipabuild.mode": self.stack_mode},
            # A monolith keeps podman's default (namespaced) capabilities: its supervisor
            # and daemons run as root inside, as upstream's container does.
            **({} if service.mode == "monolithic" else {"cap_drop": ["ALL"]}),
            "no_new_privileges": True,  # podman-py maps security_opt to SELinux options
            "dns_opt": DNS_OPTIONS,
            # Host ports from the stack's record (``hostports``: podman's own pick can
            # fail a UDP publish), the same for a port's TCP and UDP.
            "ports": {f"{p.port}/{p.protocol}": (LOOPBACK, self.host_port(p.port))
                      for p in service.ports},
            "init": True,
            # A crashed daemon comes back by itself (Kubernetes' restartPolicy does the
            # same in a cluster); `ipabuild down` stops it for good. The count caps a
            # crash loop: podman restarts without backing off.
            "restart_policy": {"Name": "on-failure", "MaximumRetryCount": RESTART_LIMIT},
        }
        if service.sysctls:
            args["sysctls"] = dict(service.sysctls)
        if self.environment:
            args["environment"] = dict(self.environment)
        if self.in_userns:
            userns = self._ids.userns
            assert userns is not None
            mapping = [{"container_id": 0, "host_id": userns.start, "size": userns.size}]
            args["dns_search"] = NETAVARK_DNS_SEARCH
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


def fixed_hosts(subnet: str, plans: list[ServicePlan]) -> dict[str, str]:
    """Every host name of every service (``ServicePlan.names``) → its fixed address."""
    if not plans:
        return {}
    first = plans[0]
    return routes_fixed_hosts(subnet, [plan.service for plan in plans], first.domain,
                              first.server_name)
