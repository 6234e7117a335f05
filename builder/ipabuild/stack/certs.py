"""The certificates of a running stack (``ipabuild certs``): each one a service's spec
declares (``certificates``), read from where that service actually holds it, joined
with what the stack's renewer recorded about it (``renewer.state``).

Reading each certificate from the container that uses it, not from the directory where
the CA publishes it, shows what is served: a service that failed to pick up a renewed
certificate shows the old serial and date.
"""

from __future__ import annotations

import datetime
import json
import shlex
from dataclasses import dataclass

from cryptography import x509
from podman import PodmanClient
from podman.errors import APIError, NotFound

from ipabuild.spec.model import HeldCertificate, Service
from ipabuild.stack.plan import ServicePlan

NSS_READ = "certutil -L -a -d {db} -n {nickname}"


@dataclass
class CertificateRow:
    """One row of ``ipabuild certs``."""

    service: str
    name: str
    role: str
    location: str
    renewed_by: str
    subject: str = ""
    serial: int | None = None
    issuer: str = ""
    not_before: str = ""
    not_after: str = ""
    days_left: float | None = None
    renewal: str = ""  # what the renewer recorded: renewals, failures, next attempt
    error: str = ""  # why the certificate could not be read

    @property
    def expired(self) -> bool:
        return self.days_left is not None and self.days_left <= 0


def location_of(held: HeldCertificate) -> str:
    return held.pem or f"{held.nssdb} ({held.nickname})"


def read_command(held: HeldCertificate) -> list[str]:
    """The command that prints ``held`` as PEM inside its container (a path may be a
    glob, e.g. 389-ds's instance directory named after the realm)."""
    if held.pem:
        return ["sh", "-c", f"cat {held.pem}"]
    assert held.nssdb and held.nickname
    return ["sh", "-c", NSS_READ.format(db=held.nssdb, nickname=shlex.quote(held.nickname))]


def describe(row: CertificateRow, pem: bytes, now: datetime.datetime) -> None:
    """Fill ``row`` from the first certificate of ``pem``."""
    cert = x509.load_pem_x509_certificate(pem)
    row.subject = cert.subject.rfc4514_string()
    row.serial = cert.serial_number
    row.issuer = cert.issuer.rfc4514_string()
    row.not_before = _iso(cert.not_valid_before_utc)
    row.not_after = _iso(cert.not_valid_after_utc)
    row.days_left = round((cert.not_valid_after_utc - now).total_seconds() / 86400, 3)


def renewal_note(record: dict) -> str:  # type: ignore[type-arg]
    """The renewer's record of a certificate in a few words."""
    if record.get("failures"):
        return (f"failing ({record['failures']} attempts): {record.get('last_error', '')}; "
                f"next attempt {record.get('next_attempt')}")
    renewals = int(record.get("renewals") or 0)
    if renewals:
        return f"renewed {renewals}x, last {record.get('renewed_at')}"
    return "tracked"


def _left(days: float) -> str:
    """``10.5 days``; under a day in hours or minutes (a short-lived test certificate)."""
    if days >= 1:
        return f"{days:.1f} days"
    minutes = days * 1440
    return f"{minutes / 60:.1f} hours" if minutes >= 60 else f"{minutes:.0f} minutes"


def _iso(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _exec(client: PodmanClient, container: str, argv: list[str]) -> tuple[int, bytes, bytes]:
    """Run ``argv`` in ``container``: exit code, stdout, stderr (demultiplexed: the
    API's raw stream interleaves frame headers with the output)."""
    found = client.containers.get(container)
    code, output = found.exec_run(argv, demux=True)
    stdout, stderr = output if isinstance(output, tuple) else (output, b"")
    return int(code or 0), bytes(stdout or b""), bytes(stderr or b"")


def renew_now(client: PodmanClient, plans: list[ServicePlan],
              names: list[str]) -> tuple[int, str]:
    """Have the stack's renewer renew ``names`` now: (exit code, what it said)."""
    renewers = [plan for plan in plans if plan.service.renewer]
    if not renewers:
        return 1, "no service of this stack renews certificates"
    plan = renewers[0]
    assert plan.service.renewer is not None
    code, stdout, stderr = _exec(client, plan.container, [*plan.service.renewer.renew_now,
                                                          *names])
    return code, (stdout + stderr).decode(errors="replace").strip()


def renewal_records(client: PodmanClient, plans: list[ServicePlan]) -> dict[str, dict]:  # type: ignore[type-arg]
    """Every renewer's records by certificate name (empty where none could be read)."""
    records: dict[str, dict] = {}  # type: ignore[type-arg]
    for plan in plans:
        if not plan.service.renewer:
            continue
        try:
            code, output, _ = _exec(client, plan.container, ["cat", plan.service.renewer.state])
            document = json.loads(output) if code == 0 else {}
        except (APIError, NotFound, ValueError):
            continue
        for record in document.get("certificates", []):
            records[str(record.get("name"))] = record
    return records


def inventory(client: PodmanClient, plans: list[ServicePlan],
              now: datetime.datetime | None = None) -> list[CertificateRow]:
    """One row per certificate the running stack's services declare."""
    now = now or datetime.datetime.now(datetime.UTC)
    records = renewal_records(client, plans)
    rows = []
    for plan in plans:
        service: Service = plan.service
        for held in service.certificates:
            row = CertificateRow(service.name, held.name, held.role, location_of(held),
                                 held.renewed_by)
            if held.name in records:
                row.renewal = renewal_note(records[held.name])
            try:
                code, output, errors = _exec(client, plan.container, read_command(held))
            except NotFound:
                row.error = "container not running"
            except APIError as exc:
                row.error = str(exc.explanation or exc)
            else:
                if code != 0 or b"-----BEGIN CERTIFICATE-----" not in output:
                    row.error = ((output + errors).decode(errors="replace").strip()
                                 .splitlines() or [f"exit {code}"])[-1]
                else:
                    try:
                        describe(row, output, now)
                    except ValueError as exc:
                        row.error = f"not a certificate: {exc}"
            rows.append(row)
    return rows


def attention(rows: list[CertificateRow], renew_before_days: float = 28.0) -> list[str]:
    """Lines for what needs a look: unreadable, expired, in the renewal window, or whose
    renewal fails."""
    lines = []
    for row in rows:
        what = f"{row.service}/{row.name}"
        if row.error:
            lines.append(f"{what}: cannot be read: {row.error}")
        elif row.expired:
            lines.append(f"{what}: EXPIRED {row.not_after}")
        elif row.days_left is not None and row.days_left <= renew_before_days:
            lines.append(f"{what}: expires in {_left(row.days_left)} ({row.not_after})")
        if row.renewal.startswith("failing"):
            lines.append(f"{what}: renewal {row.renewal}")
    return lines
