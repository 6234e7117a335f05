"""`ipabuild up` ends when every service is healthy at one moment: a check that passes
but says "settling:" (the kdc about to restart krb5kdc for its PKINIT certificate) is
waited out, and a service that never stops settling is reported as it is, not failed."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from ipabuild.stack import containers
from ipabuild.stack.containers import settling, wait_ready


def test_only_a_last_line_starting_with_the_marker_is_settling() -> None:
    assert settling("settling: kdc: healthy, PKINIT certificate published")
    assert settling("krb5kdc listening\nsettling: switching")
    assert not settling("kdc: healthy, PKINIT on, OTP on")
    assert not settling("settling: earlier\nkdc: healthy, PKINIT on")
    assert not settling("")


def _plan(start_period: int) -> SimpleNamespace:
    service = SimpleNamespace(name="kdc", healthcheck=SimpleNamespace(start_period=start_period))
    return SimpleNamespace(service=service, container="ipabuild-t-kdc")


def _client() -> SimpleNamespace:
    running = SimpleNamespace(status="running")
    return SimpleNamespace(containers=SimpleNamespace(get=lambda name: running))


def _reports(monkeypatch: pytest.MonkeyPatch, said: list[tuple[str, str]]) -> list[int]:
    calls: list[int] = []
    sequence: Iterator[tuple[str, str]] = iter(said)

    def report(client: object, container: str) -> tuple[str, str]:
        calls.append(1)
        return next(sequence, said[-1])
    monkeypatch.setattr(containers, "health_report", report)
    monkeypatch.setattr(containers.time, "sleep", lambda seconds: None)
    return calls


def test_settled_waits_until_the_check_stops_settling(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _reports(monkeypatch, [("healthy", "settling: kdc: switching"),
                                   ("unhealthy", "kdc: krb5kdc not listening on 8088 yet"),
                                   ("healthy", "kdc: healthy, PKINIT on, OTP on")])
    gates = SimpleNamespace(failed=None)
    assert wait_ready(_client(), _plan(60), gates, settled=True) == (
        "healthy", "kdc: healthy, PKINIT on, OTP on")  # type: ignore[arg-type]
    assert len(calls) == 3


def test_without_settled_a_settling_check_is_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _reports(monkeypatch, [("healthy", "settling: kdc: switching")])
    gates = SimpleNamespace(failed=None)
    assert wait_ready(_client(), _plan(60), gates)[1].startswith("settling:")  # type: ignore[arg-type]
    assert len(calls) == 1


def test_still_settling_at_the_deadline_is_returned_not_failed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _reports(monkeypatch, [("healthy", "settling: kdc: switching")])
    clock = iter(range(0, 10_000, 10))
    monkeypatch.setattr(containers.time, "monotonic", lambda: next(clock))
    gates = SimpleNamespace(failed=None)
    assert wait_ready(_client(), _plan(0), gates, settled=True) == (  # type: ignore[arg-type]
        "healthy", "settling: kdc: switching")
