"""The split stack's address plan: every service a fixed address, every name of it
resolvable through /etc/hosts, no clash with the gateway; no containers needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from ipabuild.errors import UsageError
from ipabuild.spec import load_project, load_services
from ipabuild.stack import FIRST_HOST, ServicePlan, dependency_order, fixed_hosts

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
