"""The server name's routes: which service's named port serves each of its ports.

FreeIPA's clients know one server name for LDAP, Kerberos and HTTP. The spec whose ports
have ``route``s stands for that name; a route names another service and one of its
ports. Resolved here, once, for the proxy's configuration (build), the Service and its
selector (emit) and the checks: the target service and port exist, and each target port
name is unique among the targets, since a Service's named targetPort selects every pod
that declares the name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ipabuild.core.errors import ConfigError
from ipabuild.core.resolver import service_addresses
from ipabuild.spec.model import Port, Service


@dataclass(frozen=True)
class Route:
    """One port of the server name and the container port that serves it."""

    listen: Port  # the server's own port (listen.port in the proxy container)
    service: str  # the service that serves it
    target: Port  # that service's named port


def resolve_routes(server: Service, services: list[Service], spec_file: Path | str) -> list[Route]:
    """``server``'s routes against ``services`` (every spec of the project); a route to a
    missing service or port, or a target port name two targets share, is a ConfigError
    naming ``spec_file``."""
    by_name = {s.name: s for s in services}
    routes = []
    for listen in server.ports:
        if listen.route is None:
            continue
        target_service = by_name.get(listen.route.service)
        target = next((p for p in (target_service.ports if target_service else [])
                       if p.name == listen.route.port), None)
        if target_service is None or target is None:
            raise ConfigError(spec_file, f"port {listen.name!r} routes to "
                              f"{listen.route.service}:{listen.route.port}, which no spec "
                              "declares", None,
                              "name a service and one of its ports (`ports: - name:`)")
        if target.protocol != listen.protocol:
            raise ConfigError(spec_file, f"port {listen.name!r} is {listen.protocol}, its "
                              f"target {listen.route.service}:{target.name} {target.protocol}",
                              None, "route each protocol to a port of the same protocol")
        routes.append(Route(listen, target_service.name, target))
    holders: dict[str, set[str]] = {}
    targets = {route.service for route in routes}
    for name in targets:
        for port in by_name[name].ports:
            holders.setdefault(port.name, set()).add(by_name[name].pod or name)
    for route in routes:
        if len(holders[route.target.name]) > 1:
            raise ConfigError(spec_file, f"the port name {route.target.name!r} is declared "
                              f"by {', '.join(sorted(holders[route.target.name]))}", None,
                              "give the routed ports names no other target's pod uses: a "
                              "Service's named targetPort selects every pod declaring it")
    return routes


def host_names(service: Service, domain: str, server_name: str) -> list[str]:
    """The host names ``service`` answers to on a stack's network: for the service that
    stands for the server name (the proxy, in either mode), that name first (a client
    that looks the address up, as libldap's SASL does, gets it back), then its own name
    and its aliases; each short and under ``domain``."""
    labels = [*([server_name] if service.serves_name else []), service.name, *service.aliases]
    return [name for label in labels for name in (label, f"{label}.{domain}")]


def fixed_hosts(subnet: str, services: list[Service], domain: str,
                server_name: str) -> dict[str, str]:
    """Every host name of every service (``host_names``) → the service's fixed address
    in ``subnet`` (``service_addresses``, in the given order): the /etc/hosts entries
    `ipabuild up` and compose/ give every container, so that no daemon waits on DNS."""
    addresses = service_addresses(subnet, [service.name for service in services])
    return {name: addresses[service.name] for service in services
            for name in host_names(service, domain, server_name)}
