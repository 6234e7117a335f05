"""When `ipabuild up` starts each service (ipabuild/stack/startgates.py) and the two forms of
`depends_on` in a spec. The parallel start itself runs in every integration stack."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from pydantic import ValidationError

from ipabuild.spec.model import Service
from ipabuild.stack.startgates import StartGates


def _service(depends_on: Any) -> Service:
    return Service.model_validate({
        "name": "web", "description": "fake", "user": 10001, "entrypoint": ["/bin/true"],
        "families": {"debian": {"base": "trixie", "packages": []}},
        "depends_on": depends_on})


def test_a_list_means_healthy_first_a_mapping_names_the_condition() -> None:
    assert _service(["ldap", "kdc"]).depends_on == {"ldap": "healthy", "kdc": "healthy"}
    assert _service({"ldap": "healthy", "kdc": "started"}).depends_on == {
        "ldap": "healthy", "kdc": "started"}
    assert list(_service({"ldap": "healthy", "kdc": "started"}).depends_on) == ["ldap", "kdc"]


@pytest.mark.parametrize("bad", [{"ldap": "running"}, [1], "ldap"])
def test_an_unknown_condition_or_shape_is_refused(bad: Any) -> None:
    with pytest.raises(ValidationError):
        _service(bad)


def test_started_opens_before_healthy() -> None:
    gates = StartGates(["kdc"])
    opened: list[str] = []

    def waiter(condition: str) -> None:
        if gates.wait("kdc", condition):
            opened.append(condition)

    threads = [threading.Thread(target=waiter, args=(c,)) for c in ("healthy", "started")]
    for thread in threads:
        thread.start()
    gates.started("kdc")
    threads[1].join(2)
    assert opened == ["started"]
    gates.healthy("kdc")
    threads[0].join(2)
    assert opened == ["started", "healthy"]
    gates.wait_all()  # returns: everything is healthy


def test_the_first_failure_closes_every_gate_and_is_what_wait_all_raises() -> None:
    gates = StartGates(["ldap", "kdc"])
    results: list[bool] = []
    waiter = threading.Thread(target=lambda: results.append(gates.wait("ldap", "started")))
    waiter.start()
    first = RuntimeError("ldap: not healthy within 60s")
    gates.fail(first)
    gates.fail(RuntimeError("kdc: a consequence"))
    waiter.join(2)
    assert results == [False]
    assert gates.wait("kdc", "healthy") is False
    with pytest.raises(RuntimeError) as raised:
        gates.wait_all()
    assert raised.value is first


def test_wait_all_waits_for_the_slowest_service() -> None:
    gates = StartGates(["ldap", "ca"])
    gates.healthy("ldap")
    threading.Timer(0.5, gates.healthy, args=("ca",)).start()
    began = time.monotonic()
    gates.wait_all()
    assert time.monotonic() - began >= 0.4
