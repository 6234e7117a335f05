"""ipabuild: build, deploy and prove unprivileged FreeIPA service containers."""

from pathlib import Path

__version__ = "0.1.0"

TEMPLATES = Path(__file__).parent / "templates"
"""Jinja2 templates shipped with the package: the Containerfile (build) and the posture
report (proof)."""
