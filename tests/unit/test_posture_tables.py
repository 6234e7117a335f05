"""posture's text tables as a reviewer pastes them (a non-terminal console: CI logs, a
pipe): narrow by their shape, every value whole, titles on one line, no padding."""

from __future__ import annotations

import json
from io import StringIO

from rich.console import Console
from rich.table import Table

from ipabuild.scan import OverlayScan, ScanFinding, ScanReport, findings_notes, findings_table
from ipabuild.tables import print_table

LONG_REASON = ("no runAsUser is pinned: OpenShift's restricted-v2 assigns a UID from the "
               "namespace's range (a pinned UID outside it is refused) and plain Kubernetes "
               "runs the image's numeric USER; with hostUsers false the check passes")
TAG_REASON = ("the committed overlays name the project's tag; `ipabuild manifests --registry "
              "R --digests` after `ipabuild images --push R` writes the pushed digests instead")



def _print(table: Table, notes: list[str] | None = None, *, terminal: bool = False,
           width: int = 80) -> str:
    out = StringIO()
    print_table(table, Console(file=out, force_terminal=terminal, width=width,
                               color_system=None), notes=notes or [])
    return out.getvalue()


def _body(text: str) -> list[list[str]]:
    """The cells of each body line of a printed table."""
    lines = text.split("┡", 1)[1].split("└", 1)[0].splitlines()[1:]
    return [[cell.strip() for cell in line.split("│")[1:-1]] for line in lines
            if line.startswith("│")]


def _table_width(text: str) -> int:
    return max(len(line) for line in text.splitlines() if line[:1] in "┏┃┡│├└")


def _scan_report() -> ScanReport:
    findings = [ScanFinding("CKV_K8S_14", "tag", r, TAG_REASON)
                for r in ("Deployment/http", "StatefulSet/ca", "StatefulSet/ldap")]
    findings += [ScanFinding("CKV_K8S_40", "uid", r, LONG_REASON)
                 for r in ("Deployment/http", "StatefulSet/ca")]
    findings.append(ScanFinding("CKV_K8S_99", "Ensure a made-up thing", "StatefulSet/ldap"))
    return ScanReport("checkov 3.3.30", [OverlayScan("split", findings=findings),
                                         OverlayScan("split-userns", findings=findings[:3])])


def test_findings_print_each_reason_once() -> None:
    report = _scan_report()
    text = _print(findings_table(report), findings_notes(report))
    assert _table_width(text) <= 90, text  # was overlay + check + resource + every reason
    assert text.count(TAG_REASON) == 1 and text.count(LONG_REASON) == 1
    assert f"[1] {TAG_REASON}" in text.splitlines() and f"[2] {LONG_REASON}" in text
    rows = _body(text)
    assert len(rows) == 9
    assert ["split", "CKV_K8S_40", "StatefulSet/ca", "[2]"] in rows
    assert ["split-userns", "CKV_K8S_14", "StatefulSet/ldap", "[1]"] in rows
    assert ["split", "CKV_K8S_99", "StatefulSet/ldap",
            "UNEXPLAINED: Ensure a made-up thing"] in rows
    assert json.dumps(report.to_json())  # the JSON keeps every finding's whole reason
    assert report.to_json()["overlays"][0]["findings"][3]["exception"] == LONG_REASON
