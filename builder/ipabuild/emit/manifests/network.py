"""Who talks to whom, derived from the specs, and the NetworkPolicies that follow.

A service is a *client* of another when it lists it in ``depends_on`` or names it as a
host in its environment (``ldap``, ``ldap://ldap:3389``, ``https://ca:8443``). A
stateful service (one with volumes) that has clients is a *backend*: it is reachable only
from those clients. Every other service is reachable on its published ports from anywhere
(Kerberos and the web front serve the users). Egress is denied except DNS and the ports
of the services a pod is a client of.

The server name (the service whose ports have routes) has no pods: its Service selects
the pods serving its ports. Those pods take its public ports from anywhere (FreeIPA's
clients), and a client of the server name may reach them on every routed port.
"""

from __future__ import annotations

import re
from typing import Any

from ipabuild.emit.manifests.common import (
    PART_OF,
    SERVER_LABEL,
    labels,
    selector,
    server_targets,
    spec_path,
)
from ipabuild.spec.model import Service
from ipabuild.spec.routes import resolve_routes


def _names_host(value: str, name: str) -> bool:
    return re.search(rf"(?:^|//){re.escape(name)}(?=$|[:/])", value) is not None


def clients(services: list[Service]) -> dict[str, list[str]]:
    """For each service, the sorted names of the services that use it."""
    result: dict[str, set[str]] = {s.name: set() for s in services}
    for user in services:
        if user.serves_name:
            continue  # a Service in a cluster, not a client: it only forwards
        for target in services:
            if target.name == user.name:
                continue
            if target.name in user.depends_on or any(
                    _names_host(value, target.name) for value in user.environment.values()):
                result[target.name].add(user.name)
    return {name: sorted(users) for name, users in result.items()}


def is_backend(service: Service, users: list[str]) -> bool:
    return bool(service.volumes) and bool(users)


def web_fronts(services: list[Service]) -> list[Service]:
    """Services nobody else uses that publish HTTPS (443): what a Route exposes."""
    users = clients(services)
    return [s for s in services if not users[s.name] and not s.serves_name
            and any(p.service_port == 443 for p in s.ports)]


def _ports(service: Service) -> list[dict[str, Any]]:
    return [{"port": p.port, "protocol": p.protocol.upper()} for p in service.ports]


DNS: dict[str, Any] = {"ports": [{"port": 53, "protocol": "UDP"},
                                 {"port": 53, "protocol": "TCP"}]}


def default_deny() -> dict[str, Any]:
    """Ingress and egress denied for every pod of the stack unless a policy allows it."""
    part_of = {"app.kubernetes.io/part-of": PART_OF}
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "ipabuild-default-deny", "labels": dict(part_of)},
        "spec": {"podSelector": {"matchLabels": dict(part_of)},
                 "policyTypes": ["Ingress", "Egress"]},
    }


def network_policies(services: list[Service]) -> list[dict[str, Any]]:
    """Default deny for the stack's pods, then one allow policy per service."""
    users = clients(services)
    by_name = {s.name: s for s in services}
    policies: list[dict[str, Any]] = [default_deny()]
    def pod_of(name: str) -> dict[str, str]:
        """The pods a service's traffic reaches: its own, or its host's (``pod:``)."""
        return selector(by_name[name].pod or name)

    public = server_targets(services)
    routed = [(route.target.port, route.target.protocol.upper())
              for server in services if server.serves_name
              for route in resolve_routes(server, services, spec_path(server))
              if route.listen.route is None or route.listen.route.public]
    for service in services:
        if service.serves_name:
            continue  # a Service in a cluster: no pod of its own
        spec: dict[str, Any] = {"podSelector": {"matchLabels": pod_of(service.name)},
                                "policyTypes": ["Ingress", "Egress"]}
        spec["ingress"] = []
        if service.ports:
            rule: dict[str, Any] = {"ports": _ports(service)}
            if is_backend(service, users[service.name]):
                rule["from"] = [{"podSelector": {"matchLabels": pod_of(user)}}
                                for user in users[service.name]]
                mine = public.get(service.pod or service.name, [])
                if any(p.name in mine for p in service.ports):
                    # Its ports the server name routes publicly: FreeIPA's clients.
                    spec["ingress"].append({"ports": [
                        {"port": p.port, "protocol": p.protocol.upper()}
                        for p in service.ports if p.name in mine]})
            spec["ingress"].insert(0, rule)
        egress: list[dict[str, Any]] = [DNS]
        if routed:  # the server name is every client's, the stack's own included (httpd
            # asks itself for a forms login's session cookie there)
            egress.append({"to": [{"podSelector": {"matchLabels": {
                               "app.kubernetes.io/part-of": PART_OF, SERVER_LABEL: "true"}}}],
                           "ports": [{"port": port, "protocol": protocol}
                                     for port, protocol in sorted(set(routed))]})
        for target in sorted(name for name, who in users.items() if service.name in who):
            if by_name[target].ports:
                egress.append({"to": [{"podSelector": {"matchLabels": pod_of(target)}}],
                               "ports": _ports(by_name[target])})
        spec["egress"] = egress
        policies.append({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": f"{service.name}-allow", "labels": labels(service.name)},
            "spec": spec,
        })
    return policies
