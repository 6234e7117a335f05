"""The server name's routes (ipabuild.spec.routes): resolved against the real specs, and
refused with the spec file named when a target is missing, of another protocol, or a port
name two target pods share (a Service's named targetPort would select both)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ipabuild.core.errors import ConfigError, UsageError
from ipabuild.spec.load import load_project, load_services
from ipabuild.spec.model import Service
from ipabuild.spec.routes import host_names, resolve_routes

ROOT = Path(__file__).resolve().parents[2]


def _service(name: str, ports: list[dict[str, Any]], **extra: Any) -> Service:
    return Service.model_validate({
        "name": name, "description": name, "user": 10000, "entrypoint": ["/x"],
        "families": {"debian": {"base": "trixie"}}, "ports": ports, **extra})


def _server(*routes: tuple[str, int, str, str, str]) -> Service:
    return _service("server", [
        {"name": name, "port": port, "service_port": port, "protocol": protocol,
         "route": {"service": target, "port": target_port}}
        for name, port, protocol, target, target_port in routes],
        sysctls={"net.ipv4.ip_unprivileged_port_start": "80"})


def test_the_real_server_routes_every_standard_port_to_its_service() -> None:
    project = load_project(ROOT)
    services = load_services(ROOT, project, [])
    server = next(s for s in services if s.serves_name)
    routes = {(r.listen.port, r.listen.protocol): (r.service, r.target.port)
              for r in resolve_routes(server, services, "services/server/service.yaml")}
    assert routes[(389, "tcp")] == ("ldap", 3389) and routes[(636, "tcp")] == ("ldap", 3636)
    assert routes[(88, "udp")] == ("kdc", 8088) and routes[(464, "tcp")] == ("kdc", 8464)
    assert routes[(443, "tcp")] == ("http", 443) and routes[(80, "tcp")] == ("http", 80)
    assert len(routes) == 8
    assert host_names(server, project.domain, project.server_name) == [
        "ipa", "ipa.example.test", "server", "server.example.test"]


def test_a_route_to_nothing_names_the_spec() -> None:
    ldap = _service("ldap", [{"name": "ldap", "port": 3389, "service_port": 389}])
    with pytest.raises(ConfigError, match="routes to ldap:ldaps, which no spec declares"):
        resolve_routes(_server(("ldaps", 636, "tcp", "ldap", "ldaps")), [ldap], "s.yaml")


def test_a_route_keeps_its_protocol() -> None:
    kdc = _service("kdc", [{"name": "kerberos", "port": 8088, "service_port": 88}])
    with pytest.raises(ConfigError, match="is udp, its target kdc:kerberos tcp"):
        resolve_routes(_server(("kerberos-udp", 88, "udp", "kdc", "kerberos")), [kdc], "s")


def test_a_port_name_two_target_pods_share_is_refused() -> None:
    http = _service("http", [{"name": "https", "port": 443, "service_port": 443}],
                    sysctls={"net.ipv4.ip_unprivileged_port_start": "80"})
    ca = _service("ca", [{"name": "https", "port": 8443, "service_port": 443}])
    with pytest.raises(ConfigError, match="'https' is declared by ca, http"):
        resolve_routes(_server(("https", 443, "tcp", "http", "https"),
                               ("pki", 8443, "tcp", "ca", "https")), [http, ca], "s")


def test_routes_belong_to_a_split_service_whose_every_port_has_one() -> None:
    with pytest.raises(ValueError, match="every port has a route"):
        _service("server", [
            {"name": "ldap", "port": 3389, "service_port": 389,
             "route": {"service": "ldap", "port": "ldap"}},
            {"name": "own", "port": 9000, "service_port": 9000}])


def test_a_monolithic_stack_is_the_monolith_behind_the_server_names_proxy() -> None:
    """Locally the proxy stands for the server name in both modes; in a monolithic stack
    it waits for the monolith, which answers for the services it runs, and the monolith
    no longer claims the server name (two containers would answer for it)."""
    from ipabuild.spec.load import service_names
    from ipabuild.spec.ordering import dependency_order, monolith_stack

    project = load_project(ROOT)
    every = load_services(ROOT, project, service_names(ROOT))
    stack = dependency_order(monolith_stack(every, ["monolithic"]))
    assert [s.name for s in stack] == ["monolithic", "server"]
    assert dict(stack[1].depends_on) == {"monolithic": "started"}
    assert next(s for s in every if s.serves_name).depends_on == {"ldap": "started",
                                                                  "kdc": "started"}
    assert "ipa.example.test" not in host_names(stack[0], project.domain, project.server_name)
    with pytest.raises(UsageError, match="no monolith spec named ldapx"):
        monolith_stack(every, ["ldapx"])
