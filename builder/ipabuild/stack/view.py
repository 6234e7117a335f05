"""The table of ``ipabuild status`` and ``ipabuild up``: one row per service of a stack."""

from __future__ import annotations

from rich.table import Table

from ipabuild.core.tables import new_table
from ipabuild.stack.certs import CertificateRow
from ipabuild.stack.stack import StackStatus

COLUMNS = ("service", "container", "state", "health", "ports", "host pid",
           "uid (container)", "uid (host)")
WHOLE = ("service", "container", "state", "health", "host pid", "uid (container)",
         "uid (host)")


def _id(value: int | None) -> str:
    """Blank when not measured (the container is not running), never a made-up 0."""
    return "" if value is None else str(value)


def health_cell(row: StackStatus) -> str:
    """The status, and under it what the check said beyond it ("PKINIT on, OTP on";
    "PKINIT off: no KDC certificate yet"), without the check's "<service>: healthy" lead."""
    says = row.health_says.strip()
    for lead in (f"{row.service}:", row.health, ","):
        says = says.removeprefix(lead).strip()
    return f"{row.health}\n{says}" if says else row.health


def status_table(rows: list[StackStatus]) -> Table:
    """Published ports wrap one per line on a narrow terminal; IDs and names stay whole."""
    table = new_table("ipabuild stack", COLUMNS, whole=WHOLE)
    for r in rows:
        ports = " ".join(f"{k}->{v}" for k, v in r.ports.items())
        table.add_row(r.service, r.container, r.state, health_cell(r), ports, str(r.host_pid or ""),
                      _id(r.uid_in_container), _id(r.uid_on_host))
    return table


CERT_COLUMNS = ("service", "certificate", "role", "where", "subject", "serial", "issuer",
                "not after", "days left", "renewed by", "renewal")


def certificates_table(rows: list[CertificateRow]) -> Table:
    """``ipabuild certs``: serials and dates whole; an unreadable one says why."""
    table = new_table("certificates", CERT_COLUMNS,
                      whole=("service", "certificate", "serial", "not after", "days left"))
    for r in rows:
        left = "" if r.days_left is None else f"{r.days_left:.1f}"
        serial = "" if r.serial is None else str(r.serial)
        subject = r.subject or f"({r.error})"
        table.add_row(r.service, r.name, r.role, r.location, subject, serial, r.issuer,
                      r.not_after, left, r.renewed_by, r.renewal)
    return table
