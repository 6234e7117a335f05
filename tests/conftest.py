"""Shared fixtures: the project root, and a throwaway copy of it for tests that edit specs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """A copy of ipabuild.yaml and services/ that a test may break or change."""
    shutil.copy(ROOT / "ipabuild.yaml", tmp_path / "ipabuild.yaml")
    shutil.copytree(ROOT / "services", tmp_path / "services")
    return tmp_path
