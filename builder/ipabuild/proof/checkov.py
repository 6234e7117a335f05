"""Adapter for Checkov (``pip install 'ipabuild[scan]'``), the independent scanner.

The only place that knows how Checkov is started and what its JSON looks like. It runs
Checkov's Kubernetes framework on one rendered YAML file (``checkov -f FILE --framework
kubernetes -o json``), offline (``--skip-download``), and returns the failed checks and the
counts. Checkov absent is not an error: :func:`find_checkov` returns None.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ipabuild.core.commands import run
from ipabuild.core.errors import CommandFailed

INSTALL_HINT = "pip install 'ipabuild[scan]'"


@dataclass(frozen=True)
class Finding:
    """One failed Checkov check on one resource."""

    check_id: str
    check_name: str
    resource: str  # Checkov's name: Kind.namespace.name

    @property
    def kind(self) -> str:
        return self.resource.split(".", 1)[0]

    @property
    def name(self) -> str:
        """The object's name (Checkov appends a Pod's labels after it, dot-separated)."""
        parts = self.resource.split(".")
        return parts[2] if len(parts) > 2 else parts[-1]

    @property
    def short(self) -> str:
        """``Kind/name``, as kubectl writes it."""
        return f"{self.kind}/{self.name}"


@dataclass
class CheckovReport:
    """What Checkov found on one file."""

    passed: int = 0
    failed: int = 0
    findings: list[Finding] = field(default_factory=list)


def find_checkov() -> list[str] | None:
    """The argv prefix that starts Checkov: ``checkov`` on PATH, else the importable
    module in this interpreter; None when neither exists."""
    binary = shutil.which("checkov")
    if binary:
        return [binary]
    if importlib.util.find_spec("checkov") is not None:
        return [sys.executable, "-m", "checkov.main"]
    return None


def version(argv: list[str]) -> str:
    """Checkov's version (its last line of ``--version``), "?" when it does not say."""
    result = run([*argv, "--version"], check=False, timeout=120)
    return result.stdout.strip().splitlines()[-1] if result.succeeded and result.stdout else "?"


def parse(document: Any) -> tuple[int, int, list[Finding]]:
    """(passed, failed, findings) from Checkov's JSON: one report, a list of reports (one
    per framework), or the bare summary Checkov prints when it found no resource."""
    reports = document if isinstance(document, list) else [document]
    passed = failed = 0
    findings: list[Finding] = []
    for report in reports:
        if not isinstance(report, dict):
            continue
        summary = report.get("summary", report)
        passed += int(summary.get("passed", 0))
        failed += int(summary.get("failed", 0))
        for check in (report.get("results") or {}).get("failed_checks", []):
            findings.append(Finding(check["check_id"], check.get("check_name", ""),
                                    check.get("resource", "")))
    findings.sort(key=lambda f: (f.resource, f.check_id))
    return passed, failed, findings


def scan_yaml(text: str, argv: list[str], name: str = "manifests") -> CheckovReport:
    """Run Checkov's Kubernetes checks on ``text`` (a multi-document YAML)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.yaml"
        path.write_text(text)
        result = run([*argv, "-f", str(path), "--framework", "kubernetes", "-o", "json",
                      "--quiet", "--compact", "--skip-download"], check=False, timeout=600)
    # Checkov exits 1 when a check failed: that is a result, not a failure to run.
    if result.returncode not in (0, 1):
        raise CommandFailed(result.argv, result.returncode, result.tail(), "checkov")
    try:
        document = json.loads(result.stdout)
    except json.JSONDecodeError as exc:
        raise CommandFailed(result.argv, result.returncode,
                            f"not JSON ({exc}): {result.tail(5)}", "checkov") from exc
    passed, failed, findings = parse(document)
    return CheckovReport(passed, failed, findings)
