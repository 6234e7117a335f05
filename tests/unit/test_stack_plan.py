"""The split stack's address plan: every service a fixed address, every name of it
resolvable through /etc/hosts, no clash with the gateway; no containers needed."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from ipabuild.core.errors import IpabuildError, UsageError
from ipabuild.core.hostids import USERNS_SIZE
from ipabuild.core.resolver import FIRST_HOST
from ipabuild.spec.load import load_project, load_services
from ipabuild.spec.ordering import dependency_order
from ipabuild.stack.idranges import Interval, StackIds
from ipabuild.stack.plan import ServicePlan, fixed_hosts
from ipabuild.stack.stack import Stack

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def plans() -> list[ServicePlan]:
    project = load_project(ROOT)
    services = dependency_order(load_services(ROOT, project, []))
    return [ServicePlan("t1", s, f"img/{s.name}", project.domain, "ipabuild-t1")
            for s in services]


def test_each_service_gets_its_own_address_for_all_its_names(plans: list[ServicePlan]) -> None:
    hosts = fixed_hosts("10.89.7.0/24", plans)
    addresses = {plan.service.name: hosts[plan.service.name] for plan in plans}
    assert len(set(addresses.values())) == len(plans)
    assert addresses[plans[0].service.name] == f"10.89.7.{FIRST_HOST}"
    for plan in plans:
        for name in plan.names():
            assert hosts[name] == addresses[plan.service.name], name
    assert "10.89.7.1" not in hosts.values()  # the gateway (aardvark-dns)
    assert hosts["ldap.example.test"] != hosts["kdc.example.test"]


def test_a_network_too_small_is_a_clear_error(plans: list[ServicePlan]) -> None:
    with pytest.raises(UsageError, match="too small"):
        fixed_hosts("10.89.7.0/29", plans)


def test_containers_get_the_allocated_host_ids(plans: list[ServicePlan]) -> None:
    """The registry's IDs, not a hash of the names, reach podman."""
    userns = Interval(3_000_000_000, USERNS_SIZE)
    ports = {p.port_key(port.port): 20000 + i
             for i, (p, port) in enumerate((p, port) for p in plans for port in p.service.ports)}
    ids = StackIds(userns, {p.service.name: 2_000_000_000 + i for i, p in enumerate(plans)},
                   ports)
    hosts = fixed_hosts("10.89.7.0/24", plans)
    for index, plan in enumerate(replace(p, ids=ids) for p in plans):
        args = plan.create_args({s.name: s.name for s in plan.service.secrets}, hosts)
        # The recorded host ports reach podman, one per container port, TCP and UDP alike.
        assert args["ports"] == {f"{port.port}/{port.protocol}":
                                 ("127.0.0.1", ports[plan.port_key(port.port)])
                                 for port in plan.service.ports}
        if plan.in_userns:
            mapping = [{"container_id": 0, "host_id": userns.start, "size": USERNS_SIZE}]
            assert args["idmappings"] == {"UIDMap": mapping, "GIDMap": mapping}
            assert plan.ids_label == f"userns={userns.start}:{USERNS_SIZE}"
        else:
            assert args["user"] == f"{2_000_000_000 + index}:0"
            assert "idmappings" not in args
            assert plan.ids_label == f"uid={2_000_000_000 + index}"


def test_a_plan_without_allocated_ids_refuses_to_create(plans: list[ServicePlan]) -> None:
    split = next(p for p in plans if not p.in_userns)
    with pytest.raises(IpabuildError, match="no host IDs allocated"):
        split.create_args({s.name: s.name for s in split.service.secrets},
                          fixed_hosts("10.89.7.0/24", plans))
    published = replace(next(p for p in plans if p.service.ports and not p.in_userns),
                        ids=StackIds(uids={p.service.name: 2_000_000_000 for p in plans}))
    with pytest.raises(IpabuildError, match="no host port allocated"):
        published.create_args({s.name: s.name for s in published.service.secrets},
                              fixed_hosts("10.89.7.0/24", plans))


@pytest.mark.parametrize("name", ["", "a/b", "-x", "x y", "a" * 64, "ü"])
def test_stack_names_that_cannot_name_a_lock_or_container_are_refused(name: str) -> None:
    project = load_project(ROOT)
    with pytest.raises(UsageError, match="invalid stack name"):
        Stack(None, project, [], name, "latest")  # type: ignore[arg-type]
