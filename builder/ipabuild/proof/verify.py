"""``ipabuild verify``: run the packaged testinfra suite against what is running."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ipabuild.core.errors import UsageError
from ipabuild.proof.targets import stack_containers
from ipabuild.stack.podman_api import connect

CHECKS = Path(__file__).parent / "checks"


def verify(stack: str | None, mode: str | None, extra_args: list[str]) -> int:
    """Run the checks; returns pytest's exit status (0 all passed, 1 a violation)."""
    containers = stack_containers(connect(), stack, mode)
    if not containers:
        where = f"stack {stack!r}" if stack else "any ipabuild stack"
        raise UsageError(f"nothing running for {where}" + (f" in mode {mode}" if mode else ""),
                         "start one with `ipabuild up` (see `ipabuild status`)")
    os.environ["IPABUILD_VERIFY_TARGETS"] = json.dumps([c.name for c in containers])
    return int(pytest.main([str(CHECKS), "-q", "-p", "no:cacheprovider", "--rootdir",
                            str(CHECKS), "-o", "python_files=test_*.py", *extra_args]))
