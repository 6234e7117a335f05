"""Static posture of the built overlays: our PSS "restricted" check beside Checkov's.

Each overlay is built with the real kustomize (from a copy of ``kustomize/`` with
placeholder secret values) and the same YAML goes through both checks. Every Checkov
finding is either a *documented exception*, explained by an entry of
``services/common/scanner-exceptions.yaml`` (check id, overlays, resources, reason; an
entry with ``root_init`` also quotes the spec's ``init.reason``), or *unexplained*. No
service is named here: the reasons are data.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field
from rich.table import Table

from ipabuild.core.tables import new_table
from ipabuild.core.yamlsource import load_yaml
from ipabuild.emit import kustomize
from ipabuild.emit.manifests import pss
from ipabuild.emit.manifests.common import needs_root_init
from ipabuild.proof import checkov
from ipabuild.spec.load import validate_document
from ipabuild.spec.model import Service, StrictModel

EXCEPTIONS_FILE = Path("services/common/scanner-exceptions.yaml")
OVERLAYS_OF_MODE = {"split": ["split", "split-userns"], "monolithic": ["monolithic-userns"]}


class ScannerException(StrictModel):
    """One Checkov check that stays failed on purpose, and why."""

    check: str = Field(description="Checkov check id, e.g. CKV_K8S_40")
    overlays: list[str] = Field(default_factory=lambda: ["*"],
                                description="overlay names (globs) it applies to")
    resources: list[str] = Field(default_factory=lambda: ["*"],
                                 description="`Kind/name` globs of the resources it covers")
    root_init: bool = Field(
        default=False, description="only workloads whose spec has an init step run as root "
                                   "in a user namespace; the spec's `init.reason` is quoted")
    reason: str


class ScannerExceptions(StrictModel):
    exceptions: list[ScannerException] = Field(default_factory=list)


@dataclass
class ScanFinding:
    check_id: str
    check_name: str
    resource: str  # Kind/name
    exception: str = ""  # the documented reason; empty: unexplained


@dataclass
class OverlayScan:
    overlay: str
    pss: dict[str, list[str]] = field(default_factory=dict)  # workload -> violations
    passed: int = 0
    failed: int = 0
    findings: list[ScanFinding] = field(default_factory=list)

    @property
    def unexplained(self) -> list[ScanFinding]:
        return [f for f in self.findings if not f.exception]


@dataclass
class ScanReport:
    scanner: str  # "checkov 3.3.30", or "" when Checkov is not installed
    overlays: list[OverlayScan]
    note: str = ""  # one line when Checkov is absent

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for overlay, scan in zip(data["overlays"], self.overlays, strict=True):
            overlay["unexplained"] = len(scan.unexplained)
        return data


def load_exceptions(root: Path) -> list[ScannerException]:
    """The documented exceptions; none when the file does not exist."""
    path = root / EXCEPTIONS_FILE
    if not path.is_file():
        return []
    return validate_document(ScannerExceptions, load_yaml(path), {}).exceptions


def render_overlays(root: Path, overlays: list[str]) -> dict[str, str]:
    """Each overlay built by kustomize (YAML text), from a copy of kustomize/ with
    placeholder secret values: the static facts do not depend on them, and the real
    values (if any) never leave kustomize/secrets/. Overlays that do not exist are left out.
    """
    built: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "kustomize"
        shutil.copytree(root / "kustomize", tree)
        generator = yaml.safe_load((tree / "secrets" / "kustomization.yaml").read_text())
        for entry in generator.get("secretGenerator", []):
            for name in entry.get("files", []):
                (tree / "secrets" / name.split("=")[-1]).write_text("placeholder")
        for overlay in overlays:
            if (tree / "overlays" / overlay).is_dir():
                built[overlay] = kustomize.build_text(tree / "overlays" / overlay)
    return built


def pss_facts(text: str) -> dict[str, list[str]]:
    """PSS "restricted" violations per workload (``Kind/name``) of one built overlay."""
    result: dict[str, list[str]] = {}
    for obj in yaml.safe_load_all(text):
        if obj and pss.pod_spec(obj) is not None:
            result[f"{obj['kind']}/{obj['metadata']['name']}"] = pss.violations(obj)
    return result


def explain(finding: checkov.Finding, overlay: str, exceptions: list[ScannerException],
            root_init: dict[str, str]) -> str:
    """The documented reason for ``finding``, or "" when nothing explains it."""
    for entry in exceptions:
        if entry.check != finding.check_id or not any(fnmatch(overlay, g)
                                                       for g in entry.overlays):
            continue
        if not any(fnmatch(finding.short, g) for g in entry.resources):
            continue
        if entry.root_init:
            if finding.name not in root_init:
                continue
            return f"{entry.reason} ({finding.name}: {root_init[finding.name]})"
        return entry.reason
    return ""


def scan(root: Path, services: list[Service], overlays: list[str],
         scanner: list[str] | None, rendered: dict[str, str] | None = None) -> ScanReport:
    """PSS and (when ``scanner`` is Checkov's argv) Checkov on each overlay; ``rendered``
    is ``render_overlays``' answer when the caller needs the YAML too (built once)."""
    exceptions = load_exceptions(root)
    root_init = {s.name: s.init.reason or "see its spec" for s in services
                 if needs_root_init(s) and s.init is not None}
    report = ScanReport(checkov.version(scanner) if scanner else "", [])
    if scanner:
        report.scanner = f"checkov {report.scanner}"
    else:
        report.note = f"Checkov is not installed: no independent scan ({checkov.INSTALL_HINT})"
    if rendered is None:
        rendered = render_overlays(root, overlays)
    for overlay, text in ((o, rendered[o]) for o in overlays if o in rendered):
        result = OverlayScan(overlay, pss_facts(text))
        if scanner:
            found = checkov.scan_yaml(text, scanner, overlay)
            result.passed, result.failed = found.passed, found.failed
            result.findings = [ScanFinding(f.check_id, f.check_name, f.short,
                                           explain(f, overlay, exceptions, root_init))
                               for f in found.findings]
        report.overlays.append(result)
    return report


def summary_lines(report: ScanReport) -> list[str]:
    lines = [report.note] if report.note else []
    for o in report.overlays:
        pss_count = sum(len(v) for v in o.pss.values())
        line = f"{o.overlay}: PSS restricted: {pss_count} violation(s)"
        if report.scanner:
            line += (f"; {report.scanner}: {o.failed} failed / {o.passed} passed, "
                     f"{len(o.findings) - len(o.unexplained)} documented exception(s), "
                     f"{len(o.unexplained)} unexplained")
        lines.append(line)
    return lines


FINDING_COLUMNS = ("overlay", "check", "resource", "documented exception")


def exception_reasons(report: ScanReport) -> list[str]:
    """Each documented reason once, in the order the findings first cite it: most
    findings of a stack share a handful of long reasons, which printed on every row made
    the table hundreds of columns wide."""
    return list(dict.fromkeys(f.exception for o in report.overlays for f in o.findings
                              if f.exception))


def findings_table(report: ScanReport) -> Table:
    """Every Checkov finding: its check, its resource and its reason's number (``[2]``,
    the reason in ``findings_notes``), or UNEXPLAINED and the check's name."""
    numbers = {reason: n for n, reason in enumerate(exception_reasons(report), 1)}
    table = new_table(f"{report.scanner} findings", FINDING_COLUMNS,
                      whole=("overlay", "check", "resource"))
    for o in report.overlays:
        for f in o.findings:
            table.add_row(o.overlay, f.check_id, f.resource,
                          f"[{numbers[f.exception]}]" if f.exception
                          else f"UNEXPLAINED: {f.check_name}",
                          style="" if f.exception else "bold red")
    return table


def findings_notes(report: ScanReport) -> list[str]:
    """The reasons ``findings_table`` numbers, one a line: ``[1] the committed ...``."""
    return [f"[{n}] {reason}" for n, reason in enumerate(exception_reasons(report), 1)]
