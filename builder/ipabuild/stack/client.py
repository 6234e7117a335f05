"""``ipabuild client``: the client toolbox image on a running stack's network.

A user's machine talks to the stack the way the tests do: from a container of its own,
with the stack's host names, never from inside a service container and never by
enrolling the host. The toolbox (a ``mode: client`` spec) writes its FreeIPA and
Kerberos configuration at start; this module only decides how podman runs it.

The command is run with ``podman run`` (not podman-py) because it is interactive: the
user's terminal is attached to ``ipa``, ``kinit`` or a shell.
"""

from __future__ import annotations

from dataclasses import dataclass

from ipabuild.core.errors import UsageError
from ipabuild.spec.model import Project, Service

CLIENT_MODE = "client"


def client_service(services: list[Service]) -> Service:
    """The one toolbox spec; several or none is a spec problem the user must fix."""
    found = [s for s in services if s.mode == CLIENT_MODE]
    if len(found) != 1:
        names = ", ".join(s.name for s in found) or "none"
        raise UsageError(f"expected exactly one `mode: client` spec under services/, found {names}",
                         "keep one client toolbox spec (services/client/service.yaml)")
    return found[0]


@dataclass(frozen=True)
class ClientRun:
    """Everything ``podman run`` needs to put the toolbox on a stack's network."""

    image: str
    network: str
    hosts: list[str]  # "name:address", the stack's own fixed entries
    environment: dict[str, str]
    interactive: bool
    mounts: tuple[str, ...] = ()  # podman -v arguments (host path:container path:options)

    def process_environment(self, base: dict[str, str]) -> dict[str, str]:
        """The environment to run podman with: ``base`` plus the toolbox's variables."""
        return {**base, **self.environment}

    def argv(self, command: list[str]) -> list[str]:
        argv = ["podman", "run", "--rm", "-i", *(["-t"] if self.interactive else []),
                "--network", self.network, "--read-only", "--cap-drop", "ALL",
                "--security-opt", "no-new-privileges"]
        argv += [f"--add-host={entry}" for entry in self.hosts]
        argv += [arg for mount in self.mounts for arg in ("-v", mount)]
        # Values travel in podman's environment, never on its command line (/proc/*/cmdline
        # is world-readable): `-e NAME` makes podman copy NAME from its own environment.
        argv += [arg for key in sorted(self.environment) for arg in ("-e", key)]
        return [*argv, self.image, *command]


def plan_client_run(project: Project, service: Service, stack: str, tag: str,
                    hosts: list[str], interactive: bool,
                    environment: dict[str, str] | None = None,
                    mounts: tuple[str, ...] = ()) -> ClientRun:
    """The run of ``service`` against ``stack``; ``hosts`` come from the running stack
    (empty means the stack is not running: refused, since nothing would answer)."""
    if not hosts:
        raise UsageError(f"stack {stack!r} is not running",
                         f"start it with `ipabuild up --name {stack}`")
    return ClientRun(f"{project.image.prefix}/{service.name}:{tag}", f"ipabuild-{stack}",
                     hosts, dict(environment or {}), interactive, mounts)
