"""``ipabuild secrets``: the bootstrap secrets of a stack, as files, never in git or env.

Each service declares the secrets it reads (``secrets:`` in service.yaml); the union is
what a stack needs. Files live under ``.ipabuild/secrets/<stack>/`` (git-ignored), mode
0600 in a 0700 directory, and reach containers as podman secrets (mounted files).

A secret file that exists is used only when it is safe and usable: a regular file inside
the directory (a symlink may point only at another file in it), not readable or writable
by group or others, readable, not empty, at most ``MAX_SECRET_BYTES``. Anything else is a
:class:`ConfigError` naming the file and the fix; a file is never silently replaced,
because an existing stack's volumes depend on its value.
"""

from __future__ import annotations

import errno
import os
import re
import secrets as random_source
import stat
from dataclasses import dataclass
from pathlib import Path

from ipabuild.core.errors import ConfigError, UsageError
from ipabuild.spec.model import Service

SECRET_BYTES = 24
MAX_SECRET_BYTES = 64 * 1024  # podman takes up to 500 KiB; a password is a few dozen bytes
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # podman's rule for names


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
    if not NAME.fullmatch(stack):
        raise UsageError(f"stack name {stack!r} is not a plain name",
                         "use letters, digits, '.', '_' and '-', starting with a letter or digit")
    return root / ".ipabuild" / "secrets" / stack


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _prepare_directory(directory: Path) -> None:
    if directory.exists() and not directory.is_dir():
        raise ConfigError(directory, "is not a directory", fix="move it away, or pass --out DIR")
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ConfigError(directory, f"cannot be created: {_reason(exc)}",
                          fix="check its parent directories, or pass --out DIR") from exc
    try:
        directory.chmod(0o700)
    except OSError as exc:
        raise ConfigError(directory, f"cannot be made private (chmod 0700): {_reason(exc)}",
                          fix=f"give it to this user: chown {os.geteuid()} {directory}") from exc


def _outside(directory: Path, path: Path) -> Path | None:
    """The target of the symlink ``path`` when it leaves ``directory``, else None."""
    target = Path(os.path.realpath(path))  # unlike Path.resolve, never raises on a loop
    return None if target.is_relative_to(os.path.realpath(directory)) else target


def check_secret(directory: Path, path: Path) -> None:
    """Refuse the existing secret file ``path`` unless it is safe and usable (see module)."""
    replace = "replace it with a regular file (mode 0600) holding the secret"
    if path.is_symlink():
        target = _outside(directory, path)
        if target is not None:
            raise ConfigError(path, f"is a symlink to {target}, outside {directory}",
                              fix=replace)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise ConfigError(path, "is a symlink to a file that does not exist", fix=replace
                          + ", or remove it so `ipabuild secrets` creates one") from exc
    except PermissionError as exc:
        raise ConfigError(path, "cannot be read (permission denied)",
                          fix=f"chown {os.geteuid()} {path} && chmod 600 {path}") from exc
    except OSError as exc:
        loop = " (a symlink loop)" if exc.errno == errno.ELOOP else ""
        raise ConfigError(path, f"cannot be opened{loop}: {_reason(exc)}", fix=replace) from exc
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise ConfigError(path, "is not a regular file", fix=replace)
        mode = stat.S_IMODE(status.st_mode)
        if mode & 0o077:
            raise ConfigError(path, f"is open to group or others (mode {mode:04o})",
                              fix=f"chmod 600 {path}, and change the secret if others read it")
        if status.st_size > MAX_SECRET_BYTES:
            raise ConfigError(path, f"is larger than {MAX_SECRET_BYTES // 1024} KiB",
                              fix="a secret is a password or key of a few dozen bytes: "
                                  "check the file")
        data = os.read(fd, MAX_SECRET_BYTES + 1)
    except OSError as exc:
        raise ConfigError(path, f"cannot be read: {_reason(exc)}", fix=replace) from exc
    finally:
        os.close(fd)
    if not data.strip():
        raise ConfigError(path, "is empty",
                          fix="write the secret into it, or remove it so `ipabuild secrets` "
                              "creates one (only before the stack's volumes exist)")


def _create(path: Path) -> None:
    value = random_source.token_urlsafe(SECRET_BYTES)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        raise ConfigError(path, f"cannot be created: {_reason(exc)}",
                          fix="check the owner and permissions of its directory") from exc
    with os.fdopen(fd, "w") as handle:
        handle.write(value)


def ensure_secrets(directory: Path, names: list[str]) -> SecretFiles:
    """Create the missing secret files with fresh random values; never overwrite one.

    Why never overwrite: the KDC master key and the Directory Manager password are
    already baked into the volumes of an existing stack. Existing files are checked
    with :func:`check_secret`.
    """
    for name in names:
        if not NAME.fullmatch(name):
            raise UsageError(f"secret name {name!r} is not a plain file name",
                             "rename it under `secrets:` in the service.yaml that declares it")
    _prepare_directory(directory)
    created = []
    for name in names:
        path = directory / name
        if os.path.lexists(path):
            check_secret(directory, path)
            continue
        _create(path)
        created.append(name)
    return SecretFiles(directory, names, created)
