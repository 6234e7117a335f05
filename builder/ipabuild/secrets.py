"""``ipabuild secrets``: the bootstrap secrets of a stack, as files, never in git or env.

Each service declares the secrets it reads (``secrets:`` in service.yaml); the union is
what a stack needs. Files live under ``.ipabuild/secrets/<stack>/`` (git-ignored), mode
0600 in a 0700 directory, and reach containers as podman secrets (mounted files).
"""

from __future__ import annotations

import os
import secrets as random_source
from dataclasses import dataclass
from pathlib import Path

from ipabuild.spec import Service

SECRET_BYTES = 24


@dataclass(frozen=True)
class SecretFiles:
    """Where a stack's secrets are, and which were created by this call."""

    directory: Path
    names: list[str]
    created: list[str]

    def path(self, name: str) -> Path:
        return self.directory / name


def secret_names(services: list[Service]) -> list[str]:
    """Every secret any of ``services`` reads, sorted."""
    return sorted({secret.name for service in services for secret in service.secrets})


def secrets_dir(root: Path, stack: str) -> Path:
    return root / ".ipabuild" / "secrets" / stack


def ensure_secrets(directory: Path, names: list[str]) -> SecretFiles:
    """Create the missing secret files with fresh random values; never overwrite one.

    Why never overwrite: the KDC master key and the Directory Manager password are
    already baked into the volumes of an existing stack.
    """
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    created = []
    for name in names:
        path = directory / name
        if path.exists():
            continue
        value = random_source.token_urlsafe(SECRET_BYTES)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(value)
        created.append(name)
    return SecretFiles(directory, names, created)
