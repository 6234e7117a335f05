"""The podman adapter for running stacks: podman-py against the podman API socket.

Why podman-py and not the CLI: structured objects and errors instead of parsing text.
The API service is started on demand (``podman system service``) when no socket
answers, so a user never has to set it up by hand.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path

from podman import PodmanClient
from podman.errors import APIError, NotFound

from ipabuild.errors import IpabuildError, UsageError

SOCKET = Path("/run/podman/podman.sock")
URL = f"unix://{SOCKET}"


class PodmanUnavailable(IpabuildError):
    """The podman API could not be reached or started."""


def _answers(client: PodmanClient) -> bool:
    try:
        return bool(client.ping())
    except Exception:
        return False


def connect(timeout: float = 10.0) -> PodmanClient:
    """A client for the podman API, starting ``podman system service`` if needed."""
    client = PodmanClient(base_url=URL)
    if SOCKET.exists() and _answers(client):
        return client
    SOCKET.parent.mkdir(parents=True, exist_ok=True)
    subprocess.Popen(
        ["podman", "system", "service", "--time=0", URL],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if SOCKET.exists() and _answers(client):
            return client
        time.sleep(0.2)
    raise PodmanUnavailable(f"the podman API did not answer on {SOCKET} within {timeout}s "
                            "(fix: run `podman system service` and see its errors)")


def healthcheck(client: PodmanClient, container: str) -> str:
    """Run the container's healthcheck now; 'healthy', 'unhealthy' or 'none'."""
    response = client.api.get(f"/containers/{container}/healthcheck")
    if response.status_code == 409:
        return "none"
    if response.status_code != 200:
        return "unhealthy"
    return str(response.json().get("Status", "unhealthy"))


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
                          "stop what holds the port, or start the stack under another --name")
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
