"""The exceptions ipabuild raises, with the fields the CLI needs for one clear line.

Library code raises these and never calls ``sys.exit``; ``cli`` turns them into a
message and an exit status (2 for configuration errors, 1 for runtime failures).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# Characters that would break the one line or drive the terminal when a message quotes
# user input (a YAML key "a\nb", an ESC sequence): shown as escapes instead.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def printable(text: object) -> str:
    """``text`` on one line, with control characters written as Python escapes."""
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode(), str(text))


class IpabuildError(Exception):
    """Base of every error ipabuild reports to the user."""

    exit_status = 1

    def user_message(self) -> str:
        """The one line (or short block) the CLI prints."""
        return str(self)


@dataclass
class ConfigError(IpabuildError):
    """A project file that cannot be used (a spec, a template, a secret): file, line, fix."""

    path: Path | str
    problem: str
    line: int | None = None
    fix: str = ""

    exit_status = 2

    def __post_init__(self) -> None:
        super().__init__(self.user_message())

    def user_message(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else f"{self.path}"
        text = f"{where}: {self.problem}"
        return printable(f"{text} (fix: {self.fix})" if self.fix else text)


@dataclass
class UsageError(IpabuildError):
    """A request that cannot be honoured as given (unknown service, family, …)."""

    problem: str
    fix: str = ""

    exit_status = 2

    def __post_init__(self) -> None:
        super().__init__(self.user_message())

    def user_message(self) -> str:
        return printable(f"{self.problem} (fix: {self.fix})" if self.fix else self.problem)


@dataclass
class CommandFailed(IpabuildError):
    """An external command (buildah, podman, mmdebstrap, …) exited non-zero."""

    argv: list[str]
    returncode: int
    output_tail: str
    step: str = ""

    def __post_init__(self) -> None:
        super().__init__(self.user_message())

    def user_message(self) -> str:
        what = self.step or " ".join(self.argv[:3])
        return f"{what} failed (exit {self.returncode}):\n{self.output_tail}"


@dataclass
class BuildFailed(IpabuildError):
    """One image failed to build: which service, at which step, and buildah's last lines."""

    service: str
    step: str
    log_tail: str

    def __post_init__(self) -> None:
        super().__init__(self.user_message())

    def user_message(self) -> str:
        return f"{self.service}: {self.step} failed\n{self.log_tail}"


@dataclass
class RegistryUnavailable(IpabuildError):
    """A base names a registry image that this host cannot pull (no registry access)."""

    image: str
    family: str
    detail: str

    def __post_init__(self) -> None:
        super().__init__(self.user_message())

    def user_message(self) -> str:
        return (
            f"base image {self.image} of family {self.family!r} cannot be pulled: {self.detail}"
            f" (fix: give this host access to that registry, or use --render-only DIR "
            f"to write the Containerfiles without building)"
        )
