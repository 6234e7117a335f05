"""Small helpers the integration tests use to drive real podman (argv lists, no shell)."""

from __future__ import annotations

import json
import random
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field


def sh(argv: Sequence[str], check: bool = True,
       timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                            check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} -> {result.returncode}\n{result.stderr[-3000:]}")
    return result


def random_uid() -> int:
    """An OpenShift-like arbitrary UID, far from any image's own user."""
    return random.randint(1_000_000_000, 2_000_000_000)


def unique(prefix: str) -> str:
    return f"ipabuild-test-{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class Sandbox:
    """Throwaway podman objects, removed in ``cleanup`` even when a test fails."""

    containers: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)

    def secret(self, name: str, value: str) -> str:
        real = unique(name)
        subprocess.run(["podman", "secret", "create", real, "-"], input=value, text=True,
                       capture_output=True, check=True)
        self.secrets.append(real)
        return real

    def volume(self) -> str:
        name = unique("vol")
        sh(["podman", "volume", "create", name])
        self.volumes.append(name)
        return name

    def network(self) -> str:
        name = unique("net")
        sh(["podman", "network", "create", name])
        self.networks.append(name)
        return name

    def run(self, image: str, uid: int, *, secrets: dict[str, str] | None = None,
            volumes: dict[str, str] | None = None, extra: Sequence[str] = (),
            args: Sequence[str] = ()) -> str:
        """Start ``image`` detached as ``uid``:0 with a read-only root, like OpenShift would."""
        name = unique("ctr")
        argv = ["podman", "run", "-d", "--name", name, "--user", f"{uid}:0", "--read-only",
                "--cap-drop", "all", "--security-opt", "no-new-privileges"]
        if secrets:
            argv += ["--tmpfs", "/run/secrets"]
            for target, real in secrets.items():
                argv += ["--secret", f"{real},target={target}"]
        for volume, path in (volumes or {}).items():
            argv += ["-v", f"{volume}:{path}"]
        argv += [*extra, image, *args]
        sh(argv)
        self.containers.append(name)
        return name

    def cleanup(self) -> None:
        for name in self.containers:
            # -v: the anonymous volumes of the images' VOLUMEs go too
            sh(["podman", "rm", "-f", "-v", "-t", "2", name], check=False)
        for name in self.volumes:
            sh(["podman", "volume", "rm", "-f", name], check=False)
        for name in self.secrets:
            sh(["podman", "secret", "rm", name], check=False)
        for name in self.networks:
            sh(["podman", "network", "rm", "-f", name], check=False)


def logs(container: str) -> str:
    result = sh(["podman", "logs", container], check=False)
    return result.stdout + result.stderr


def is_running(container: str) -> bool:
    result = sh(["podman", "inspect", "--format", "{{.State.Running}}", container], check=False)
    return result.stdout.strip() == "true"


def wait_healthy(container: str, timeout: float) -> float:
    """Run the image's own healthcheck until it passes; returns seconds taken."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if sh(["podman", "healthcheck", "run", container], check=False).returncode == 0:
            return time.monotonic() - started
        if not is_running(container):
            raise AssertionError(f"{container} exited:\n{logs(container)[-3000:]}")
        time.sleep(0.5)
    raise AssertionError(f"{container} not healthy after {timeout}s:\n{logs(container)[-3000:]}")


def wait_for_log(container: str, text: str, timeout: float) -> str:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        output = logs(container)
        if text in output:
            return output
        time.sleep(0.5)
    raise AssertionError(f"{text!r} not in logs of {container}:\n{logs(container)[-3000:]}")


def host_port(container: str, port: int) -> int:
    result = sh(["podman", "port", container, f"{port}/tcp"])
    return int(result.stdout.strip().rsplit(":", 1)[1])


def image_config(image: str) -> dict:
    return json.loads(sh(["podman", "image", "inspect", image]).stdout)[0]
