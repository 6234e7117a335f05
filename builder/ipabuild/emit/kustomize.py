"""Adapter for the kustomize binary: ``kubectl kustomize``, ``kustomize build`` or
``oc kustomize``, whichever is installed. The only place that knows the difference.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ipabuild.core.errors import CommandFailed, UsageError

# binary -> argv before the directory, in order of preference
FLAVOURS: dict[str, list[str]] = {
    "kubectl": ["kubectl", "kustomize"],
    "kustomize": ["kustomize", "build"],
    "oc": ["oc", "kustomize"],
}


@dataclass(frozen=True)
class KustomizeResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


def find_kustomize() -> list[str]:
    """The argv prefix of the first kustomize found on PATH."""
    for binary, argv in FLAVOURS.items():
        path = shutil.which(binary)
        if path:
            return [path, *argv[1:]]
    raise UsageError("no kustomize found (kubectl, kustomize or oc)",
                     "install kubectl (kubectl kustomize) or kustomize v5")


def run(directory: Path, timeout: int = 120) -> KustomizeResult:
    argv = [*find_kustomize(), str(directory)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    return KustomizeResult(argv, done.returncode, done.stdout, done.stderr)


def build_text(directory: Path) -> str:
    """Build a kustomization; its YAML as kustomize prints it, or CommandFailed."""
    result = run(directory)
    if result.returncode != 0:
        raise CommandFailed(result.argv, result.returncode, result.stderr.strip()[-2000:],
                            f"kustomize build of {directory}")
    return result.stdout


def build(directory: Path) -> list[dict[str, Any]]:
    """Build a kustomization; its objects, or CommandFailed with kustomize's message."""
    return [doc for doc in yaml.safe_load_all(build_text(directory)) if doc]
