"""Run external commands as argv lists and return what happened as a small dataclass.

Every engine adapter (buildah, podman, mmdebstrap, kustomize) goes through here so
that no command is ever built as a shell string.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ipabuild.core.errors import CommandFailed

TAIL_LINES = 25


@dataclass(frozen=True)
class CommandResult:
    """The outcome of one external command."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def succeeded(self) -> bool:
        return self.returncode == 0

    def tail(self, lines: int = TAIL_LINES) -> str:
        """The last lines of combined output: what a user needs to see on failure."""
        combined = (self.stdout + "\n" + self.stderr).strip().splitlines()
        return "\n".join(combined[-lines:])


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    step: str = "",
    input_bytes: bytes | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
    log_path: Path | None = None,
) -> CommandResult:
    """Run ``argv``; raise :class:`CommandFailed` on a non-zero exit when ``check``.

    With ``log_path`` the output streams into that file (long builds) and only its
    tail is kept in memory.
    """
    args = [str(a) for a in argv]
    if log_path is not None:
        with log_path.open("wb") as log:
            proc = subprocess.run(
                args, stdout=log, stderr=subprocess.STDOUT, input=input_bytes,
                cwd=cwd, timeout=timeout, check=False,
            )
        text = log_path.read_text(errors="replace")
        result = CommandResult(args, proc.returncode, text, "")
    else:
        proc = subprocess.run(
            args, capture_output=True, input=input_bytes, cwd=cwd, timeout=timeout, check=False,
        )
        result = CommandResult(
            args, proc.returncode,
            proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"),
        )
    if check and not result.succeeded:
        raise CommandFailed(args, result.returncode, result.tail(), step)
    return result


def which(name: str) -> str | None:
    """Path of an executable on PATH, or None."""
    return shutil.which(name)
