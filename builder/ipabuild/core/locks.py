"""Host-wide advisory locks (``fcntl.flock``) that say who holds them.

Stacks, the ID registry and the image store are shared by every ipabuild process on
the host, whichever checkout it runs from, so their locks live in one state
directory (``/var/lib/ipabuild``, or ``$IPABUILD_STATE_DIR`` for tests). The holder
writes its PID into the lock file, so a process that finds the lock taken can name
it. ``flock`` is released by the kernel when the holder exits, even on SIGKILL: a
stale lock file never blocks anyone, at worst it shows an old PID to nobody.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ipabuild.core.errors import IpabuildError, UsageError

STATE_ENV = "IPABUILD_STATE_DIR"
DEFAULT_STATE_DIR = Path("/var/lib/ipabuild")


def state_dir() -> Path:
    """Where host-wide ipabuild state lives (created on first use, mode 0700)."""
    path = Path(os.environ.get(STATE_ENV) or DEFAULT_STATE_DIR)
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create ipabuild's state directory {path}: {exc.strerror}",
                         f"run as root (podman is rootful here), or set {STATE_ENV} "
                         "to a writable directory") from exc
    return path


@dataclass
class Busy(IpabuildError):
    """A lock that must not be waited for is held by another process."""

    what: str
    pid: int | None
    fix: str

    def __post_init__(self) -> None:
        super().__init__(self.user_message())

    def user_message(self) -> str:
        holder = f"PID {self.pid}" if self.pid else "another process"
        return f"{self.what} is held by {holder} (fix: {self.fix})"


def holder_pid(path: Path) -> int | None:
    """The PID written by the lock's current holder (None when unknown)."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


@contextmanager
def held(path: Path, what: str, fix: str = "",
         on_wait: Callable[[int | None], None] | None = None) -> Iterator[None]:
    """Hold the lock at ``path``.

    Without ``on_wait`` a taken lock raises ``Busy`` at once (two ``up`` of one stack);
    with it, ``on_wait(holder_pid)`` is called once and the lock is waited for (two
    ``images``, the registry's short critical sections).
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is None:
                raise Busy(what, holder_pid(path), fix) from None
            on_wait(holder_pid(path))
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # before unlocking: the next holder writes its own PID
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def stack_lock(stack: str) -> Path:
    return state_dir() / "locks" / f"stack-{stack}.lock"


def images_lock() -> Path:
    return state_dir() / "locks" / "images.lock"
