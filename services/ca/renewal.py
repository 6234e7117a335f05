"""When to renew a certificate, and what the renewer remembers between rounds.

FreeIPA has certmonger decide: it renews a tracked certificate once it is within
``enroll_ttls`` of its notAfter (28 days by default) and, when a renewal fails, tries
again later. The split stack's renewer (``renewer.py run``, in the ca container) makes
the same decision here, without I/O, so that it is unit-tested: a certificate is

* ``valid``: outside the renewal window; nothing to do until ``at``;
* ``due``: inside the window (or expired, or none at all): renew now;
* ``backoff``: due, but the last attempt failed; the next attempt is at ``at``, each
  failure doubling the wait from ``FIRST_RETRY`` up to ``LAST_RETRY`` (certmonger
  retries failed submissions too, every 8 hours for CA_UNREACHABLE; a stack's CA is
  one container away, so the first retries come much sooner).

The record of each certificate (serial, notAfter, failures, last error, next attempt)
lives in one JSON file on the ca's data volume, written whole and renamed into place,
so that a crash never leaves half a record; ``status`` and ``ipabuild certs`` read it.

Runs on bullseye's Python 3.9 (the ca image) and the host's.
"""

from __future__ import annotations

import datetime
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import derived_keys  # beside this file in the image (/usr/local/lib/ipabuild)

DEFAULT_RENEW_BEFORE = datetime.timedelta(days=28)  # certmonger's first enroll_ttl
DEFAULT_CHECK_EVERY = datetime.timedelta(hours=1)
FIRST_RETRY = datetime.timedelta(minutes=1)
LAST_RETRY = datetime.timedelta(hours=8)  # certmonger's CA_UNREACHABLE delay
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d+)([smhd])")


class DurationError(ValueError):
    """A duration that is not e.g. ``28d``, ``90m`` or ``1h30m``."""


def parse_duration(text: str) -> datetime.timedelta:
    """``28d``, ``12h``, ``90m``, ``45s``, ``1h30m`` or plain seconds (``3600``)."""
    value = text.strip()
    if value.isdigit():
        return datetime.timedelta(seconds=int(value))
    if not value or _DURATION.sub("", value):
        raise DurationError(f"{text!r} is not a duration: use e.g. 28d, 12h, 90m, 45s, 1h30m")
    return datetime.timedelta(seconds=sum(int(n) * _UNITS[u]
                                          for n, u in _DURATION.findall(value)))


@dataclass
class Record:
    """What the renewer knows of one certificate (one entry of the state file)."""

    name: str
    serial: int | None = None
    not_after: str | None = None  # ISO 8601, UTC
    renewed_at: str | None = None  # when this renewer last had it re-issued
    renewals: int = 0
    failures: int = 0  # consecutive failed attempts since the last success
    last_error: str = ""
    next_attempt: str | None = None  # after a failure: not before this time

    def failed(self, now: datetime.datetime, error: str) -> None:
        """Count a failed attempt and set the next one (doubling backoff)."""
        self.failures += 1
        self.last_error = error
        self.next_attempt = _iso(now + retry_delay(self.failures))

    def succeeded(self, serial: int, not_after: datetime.datetime,
                  now: datetime.datetime, renewed: bool) -> None:
        self.serial = serial
        self.not_after = _iso(not_after)
        if renewed:
            self.renewed_at = _iso(now)
            self.renewals += 1
        self.failures = 0
        self.last_error = ""
        self.next_attempt = None


@dataclass(frozen=True)
class Decision:
    kind: str  # valid | due | backoff
    at: datetime.datetime  # valid: when it becomes due; due: now; backoff: next attempt
    reason: str


def retry_delay(failures: int) -> datetime.timedelta:
    """Wait after the ``failures``-th consecutive failure: 1 min, 2, 4, ... up to 8 h."""
    if failures < 1:
        return datetime.timedelta(0)
    return min(FIRST_RETRY * (2 ** min(failures - 1, 20)), LAST_RETRY)


def decide(not_after: datetime.datetime | None, now: datetime.datetime,
           renew_before: datetime.timedelta, record: Record | None = None) -> Decision:
    """Whether the certificate valid until ``not_after`` (None: there is none valid)
    is renewed now, given the last attempts in ``record``."""
    if not_after is None:
        reason = "no valid certificate"
    elif not_after <= now:
        reason = f"expired {_ago(now - not_after)} ago"
    elif not_after - now > renew_before:
        return Decision("valid", not_after - renew_before,
                        f"valid for {_ago(not_after - now)}")
    else:
        reason = f"expires in {_ago(not_after - now)} (renewal window {_ago(renew_before)})"
    if record is not None and record.failures and record.next_attempt:
        retry = _parse_iso(record.next_attempt)
        if retry > now:
            return Decision("backoff", retry, f"{reason}; attempt {record.failures} failed: "
                                              f"{record.last_error}")
    return Decision("due", now, reason)


def _ago(delta: datetime.timedelta) -> str:
    """A short human duration: 27d, 5h, 12m, 30s."""
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def _iso(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(text: str) -> datetime.datetime:
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc)


@dataclass
class State:
    """The state file: one record per certificate, and when the renewer last looked."""

    records: dict[str, Record] = field(default_factory=dict)
    checked_at: str | None = None
    renew_before: str | None = None

    def record(self, name: str) -> Record:
        return self.records.setdefault(name, Record(name))

    @classmethod
    def load(cls, path: str) -> State:
        """The state at ``path``; a missing or unreadable file is an empty state (the
        renewer re-learns everything from the certificates themselves)."""
        try:
            with open(path, encoding="utf-8") as handle:
                document: dict[str, Any] = json.load(handle)
            records = {item["name"]: Record(**item) for item in document.get("certificates", [])}
            return cls(records, document.get("checked_at"), document.get("renew_before"))
        except (OSError, ValueError, TypeError, KeyError):
            return cls()

    def save(self, path: str) -> None:
        """Written whole to a temporary file beside ``path``, then renamed over it."""
        document = {"checked_at": self.checked_at, "renew_before": self.renew_before,
                    "certificates": [asdict(r) for r in self.records.values()]}
        derived_keys.write_whole(path, json.dumps(document, indent=2).encode(), 0o660)

    def summary(self, now: datetime.datetime, renew_before: datetime.timedelta) -> str:
        """One line for the health check: failing renewals first, then what is due."""
        failing = [r for r in self.records.values() if r.failures]
        if failing:
            return "; ".join(f"renewal of {r.name} failing ({r.failures} attempts): "
                             f"{r.last_error}" for r in failing)
        if not self.records:
            return "certificates: not checked yet"
        soonest = min((r for r in self.records.values() if r.not_after),
                      key=lambda r: r.not_after or "", default=None)
        if soonest is None or soonest.not_after is None:
            return "certificates: not checked yet"
        left = _parse_iso(soonest.not_after) - now
        if left.total_seconds() <= 0:
            return (f"certificates: {len(self.records)} tracked, EXPIRED: {soonest.name} "
                    f"({_ago(-left)} ago)")
        due = decide(_parse_iso(soonest.not_after), now, renew_before).kind != "valid"
        what = "due for renewal" if due else "soonest to expire"
        return (f"certificates: {len(self.records)} tracked, {what}: {soonest.name} "
                f"(expires in {_ago(left)})")
