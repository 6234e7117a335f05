"""The podman adapter for running stacks: podman-py against the podman API socket.

Why podman-py and not the CLI: structured objects and errors instead of parsing text.
The API service is started on demand (``podman system service``) when no socket
answers, so a user never has to set it up by hand.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from podman import PodmanClient
from podman.errors import APIError, NotFound

from ipabuild.core.errors import IpabuildError, UsageError

SOCKET = Path("/run/podman/podman.sock")
URL = f"unix://{SOCKET}"


class PodmanUnavailable(IpabuildError):
    """The podman API could not be reached or started."""


def _answers(client: PodmanClient) -> bool:
    try:
        return bool(client.ping())
    except Exception:
        return False


def stale_services(proc: Path = Path("/proc")) -> list[int]:
    """PIDs of API services on our socket whose working directory was deleted.

    Such a service still answers pings, but every container it starts fails with "write
    child: broken pipe": conmon inherits the vanished directory. It happens when the
    process that started the service on demand ran in a directory removed since (a test's
    temporary project, a git worktree, a CI clone)."""
    found = []
    for entry in proc.glob("[0-9]*"):
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if b"system" in argv and b"service" in argv and URL.encode() in argv \
                and cwd.endswith(" (deleted)"):
            found.append(int(entry.name))
    return found


def connect(timeout: float = 10.0) -> PodmanClient:
    """A client for the podman API, starting ``podman system service`` if needed (and
    replacing one that can no longer start containers, see ``stale_services``)."""
    client = PodmanClient(base_url=URL)
    for pid in stale_services():
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)  # containers keep running: conmon is their parent
        deadline = time.monotonic() + timeout
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    if SOCKET.exists() and _answers(client):
        return client
    SOCKET.parent.mkdir(parents=True, exist_ok=True)
    # cwd "/": the service outlives this process and must not hold on to its directory.
    subprocess.Popen(
        ["podman", "system", "service", "--time=0", URL], cwd="/",
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if SOCKET.exists() and _answers(client):
            return client
        time.sleep(0.2)
    raise PodmanUnavailable(f"the podman API did not answer on {SOCKET} within {timeout}s "
                            "(fix: run `podman system service` and see its errors)")


def another_client() -> PodmanClient:
    """One more client of the API service ``connect`` made sure of: one per thread."""
    return PodmanClient(base_url=URL)


def health_report(client: PodmanClient, container: str) -> tuple[str, str]:
    """Run the container's healthcheck now: its status and what the check printed last
    (the services' checks say in one line which part is missing)."""
    response = client.api.get(f"/containers/{container}/healthcheck")
    if response.status_code == 409:
        return "none", ""
    if response.status_code != 200:
        return "unhealthy", ""
    document = response.json()
    log = document.get("Log") or []
    if not log:
        # podman 4.3's endpoint answers "Log": null; the run it just made is the last
        # entry of the container's own health log.
        try:
            inspected = client.containers.get(container).attrs
            log = ((inspected.get("State") or {}).get("Health") or {}).get("Log") or []
        except (APIError, NotFound):
            log = []
    output = str(log[-1].get("Output", "")).strip() if log else ""
    return str(document.get("Status", "unhealthy")), output


def log_tail(client: PodmanClient, container: str, lines: int = 20) -> str:
    try:
        raw = client.containers.get(container).logs(stdout=True, stderr=True, tail=lines)
        data = raw if isinstance(raw, bytes) else b"".join(raw)
        return data.decode(errors="replace").rstrip()
    except (APIError, NotFound):
        return "(no logs)"


def api_error(exc: APIError, what: str) -> IpabuildError:
    """Turn a podman API error into one clear line; port clashes get their own fix."""
    text = str(exc.explanation or exc)
    if "address already in use" in text:
        return UsageError(f"{what}: a published port is already in use ({text})",
                          "stop what holds it (`ss -tulpn | grep :PORT` names it); the "
                          "stack's host ports are recorded for its life, so `ipabuild down "
                          "--volumes` is the only way to new ones")
    return IpabuildError(f"{what}: {text}")


def store_secrets(client: PodmanClient, files: dict[str, Path]) -> None:
    """Create (or replace) podman secrets ``name`` from ``files``."""
    for name, path in files.items():
        # APIError too: podman 4.3 can keep a secret's record after its data is gone
        # ("no secret data with ID"); the create below then replaces it.
        with contextlib.suppress(NotFound, APIError):
            client.secrets.get(name).remove()
        try:
            client.secrets.create(name, path.read_bytes())
        except APIError as exc:
            if "in use" not in str(exc.explanation or exc):
                raise
            raise IpabuildError(
                f"podman secret {name!r} cannot be replaced: its record outlived its data "
                "(podman 4.3, e.g. after `podman system reset`); run `ipabuild doctor --fix`"
            ) from exc
