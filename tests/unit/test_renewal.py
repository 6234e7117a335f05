"""The renewer's decision (services/ca/renewal.py): thresholds, expired certificates, a
failing renewal retried with a doubling backoff and reported, and the state file."""

from __future__ import annotations

import datetime
import json
import os
import sys
from pathlib import Path

import pytest
from service_modules import ROOT, load

sys.path.insert(0, str(ROOT / "services" / "common"))  # renewal imports derived_keys
renewal = load("services/ca/renewal.py")

NOW = datetime.datetime(2026, 12, 5, 12, 0, tzinfo=datetime.UTC)
DAY = datetime.timedelta(days=1)
WINDOW = datetime.timedelta(days=28)


@pytest.mark.parametrize(("text", "seconds"), [
    ("28d", 28 * 86400), ("12h", 43200), ("90m", 5400), ("45s", 45), ("1h30m", 5400),
    ("3600", 3600)])
def test_durations(text: str, seconds: int) -> None:
    assert renewal.parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "d", "1w", "1.5h", "-1d", "1h 30m"])
def test_bad_durations_say_what_is_expected(text: str) -> None:
    with pytest.raises(renewal.DurationError, match="28d, 12h"):
        renewal.parse_duration(text)


def test_outside_the_window_is_valid_until_the_window_opens() -> None:
    decision = renewal.decide(NOW + 60 * DAY, NOW, WINDOW)
    assert decision.kind == "valid"
    assert decision.at == NOW + 32 * DAY


def test_inside_the_window_is_due() -> None:
    decision = renewal.decide(NOW + 27 * DAY, NOW, WINDOW)
    assert decision.kind == "due"
    assert "expires in 27d" in decision.reason


def test_the_window_boundary_is_due() -> None:
    assert renewal.decide(NOW + WINDOW, NOW, WINDOW).kind == "due"
    assert renewal.decide(NOW + WINDOW + datetime.timedelta(seconds=1), NOW,
                          WINDOW).kind == "valid"


def test_expired_and_missing_certificates_are_due() -> None:
    expired = renewal.decide(NOW - 2 * DAY, NOW, WINDOW)
    assert expired.kind == "due" and "expired 2d ago" in expired.reason
    assert renewal.decide(None, NOW, WINDOW).kind == "due"


def test_a_failure_backs_off_doubling_up_to_eight_hours() -> None:
    record = renewal.Record("http-tls")
    delays = []
    for _ in range(12):
        record.failed(NOW, "Dogtag POST /certrequests answered 503")
        delays.append(renewal._parse_iso(record.next_attempt) - NOW)
    minutes = [int(d.total_seconds() // 60) for d in delays]
    assert minutes[:5] == [1, 2, 4, 8, 16]
    assert max(minutes) == 480 and minutes[-1] == 480
    assert record.failures == 12


def test_due_after_a_failure_waits_for_the_retry_then_tries_again() -> None:
    record = renewal.Record("http-tls")
    record.failed(NOW, "CA down")
    waiting = renewal.decide(NOW + DAY, NOW + datetime.timedelta(seconds=30), WINDOW, record)
    assert waiting.kind == "backoff"
    assert waiting.at == NOW + datetime.timedelta(minutes=1)
    assert "attempt 1 failed: CA down" in waiting.reason
    retry = renewal.decide(NOW + DAY, NOW + datetime.timedelta(minutes=2), WINDOW, record)
    assert retry.kind == "due"


def test_a_failure_does_not_hold_back_a_certificate_outside_the_window() -> None:
    record = renewal.Record("ldap-tls")
    record.failed(NOW, "profile refused")
    assert renewal.decide(NOW + 90 * DAY, NOW, WINDOW, record).kind == "valid"


def test_success_clears_the_failures_and_counts_the_renewal() -> None:
    record = renewal.Record("kdc-pkinit")
    record.failed(NOW, "CA down")
    record.succeeded(0x1234, NOW + 731 * DAY, NOW, renewed=True)
    assert (record.failures, record.last_error, record.next_attempt) == (0, "", None)
    assert record.renewals == 1 and record.serial == 0x1234
    assert record.not_after == "2028-12-05T12:00:00Z"


def test_state_round_trips_and_is_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "ipabuild" / "renewal.json"
    state = renewal.State()
    state.record("ra-agent").succeeded(7, NOW + 720 * DAY, NOW, renewed=False)
    state.record("http-tls").failed(NOW, "CA down")
    state.save(str(path))
    assert oct(path.stat().st_mode & 0o777) == "0o660"
    assert [p.name for p in path.parent.iterdir()] == ["renewal.json"]  # no temp left
    loaded = renewal.State.load(str(path))
    assert loaded.records["ra-agent"].serial == 7
    assert loaded.records["http-tls"].last_error == "CA down"
    assert json.loads(path.read_text())["certificates"][0]["name"] == "ra-agent"


def test_an_unreadable_state_is_an_empty_one(tmp_path: Path) -> None:
    path = tmp_path / "renewal.json"
    path.write_text("{half a docu")
    assert renewal.State.load(str(path)).records == {}
    assert renewal.State.load(str(tmp_path / "absent.json")).records == {}


def test_a_failed_save_leaves_the_old_state(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "renewal.json"
    renewal.State({"a": renewal.Record("a", serial=1)}).save(str(path))

    def broken(*_args, **_kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError):
        renewal.State({"a": renewal.Record("a", serial=2)}).save(str(path))
    assert renewal.State.load(str(path)).records["a"].serial == 1
    assert os.listdir(tmp_path) == ["renewal.json"]


def test_the_health_line_names_failures_first_then_the_soonest() -> None:
    state = renewal.State()
    state.record("ra-agent").succeeded(1, NOW + 700 * DAY, NOW, renewed=False)
    state.record("http-tls").succeeded(2, NOW + 20 * DAY, NOW, renewed=False)
    line = state.summary(NOW, WINDOW)
    assert line == "certificates: 2 tracked, due for renewal: http-tls (expires in 20d)"
    state.record("ldap-tls").failed(NOW, "CA down")
    assert state.summary(NOW, WINDOW) == ("renewal of ldap-tls failing (1 attempts): "
                                          "CA down")


def test_the_health_line_says_expired() -> None:
    state = renewal.State()
    state.record("kdc-pkinit").succeeded(3, NOW - 2 * DAY, NOW - 800 * DAY, renewed=False)
    assert state.summary(NOW, WINDOW) == ("certificates: 1 tracked, EXPIRED: kdc-pkinit "
                                          "(2d ago)")
