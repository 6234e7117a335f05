"""The overlays' static scan: Checkov's findings beside the PSS check, each one explained
by services/common/scanner-exceptions.yaml or shown as unexplained."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from ipabuild.cli import main
from ipabuild.core.errors import ConfigError
from ipabuild.proof import checkov, scan
from ipabuild.proof.checkov import Finding
from ipabuild.proof.scan import ScannerException, explain
from ipabuild.spec.load import load_project, load_services

ROOT = Path(__file__).resolve().parents[2]


def _checkov() -> list[str]:
    """Checkov's argv. CI installs the test extra, which has it: there a missing Checkov
    fails; a developer's older install skips, saying how to get it."""
    argv = checkov.find_checkov()
    if argv is None:
        message = f"Checkov is not installed: {checkov.INSTALL_HINT} (the test extra has it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return argv


def test_parse_reads_one_report_a_list_and_a_bare_summary() -> None:
    report = {"check_type": "kubernetes", "summary": {"passed": 3, "failed": 1},
              "results": {"failed_checks": [{"check_id": "CKV_K8S_8", "check_name": "probe",
                                             "resource": "StatefulSet.ipabuild.ldap"}]}}
    assert checkov.parse(report) == (3, 1, [Finding("CKV_K8S_8", "probe",
                                                    "StatefulSet.ipabuild.ldap")])
    assert checkov.parse([report, report])[:2] == (6, 2)
    assert checkov.parse({"passed": 0, "failed": 0, "skipped": 0}) == (0, 0, [])


def test_finding_names_pods_without_their_labels() -> None:
    pod = Finding("CKV2_K8S_6", "", "Pod.ipabuild.freeipa.app.kubernetes.io/name-freeipa")
    assert pod.short == "Pod/freeipa"
    assert Finding("x", "", "Secret.ipabuild.s-1").short == "Secret/s-1"


def test_explain_matches_check_overlay_resource_and_root_init() -> None:
    entries = [ScannerException(check="CKV_K8S_25", overlays=["split*"],
                                resources=["StatefulSet/*"], root_init=True, reason="ns caps"),
               ScannerException(check="CKV_K8S_40", overlays=["split"], reason="no UID")]
    root_init = {"ca": "pkispawn needs euid 0"}
    ca = Finding("CKV_K8S_25", "", "StatefulSet.ipabuild.ca")
    assert explain(ca, "split-userns", entries, root_init) == "ns caps (ca: pkispawn needs euid 0)"
    # the same check on a workload without a root init step is not explained
    assert explain(Finding("CKV_K8S_25", "", "StatefulSet.ipabuild.ldap"), "split", entries,
                   root_init) == ""
    assert explain(ca, "monolithic-userns", entries, root_init) == ""  # other overlay
    assert explain(Finding("CKV_K8S_25", "", "Deployment.ipabuild.ca"), "split", entries,
                   root_init) == ""  # other kind
    uid = Finding("CKV_K8S_40", "", "Deployment.ipabuild.http")
    assert explain(uid, "split", entries, root_init) == "no UID"
    assert explain(uid, "split-userns", entries, root_init) == ""


def test_the_exceptions_file_is_strict(tmp_path: Path) -> None:
    assert scan.load_exceptions(ROOT), "the checked-in exceptions file explains nothing"
    path = tmp_path / scan.EXCEPTIONS_FILE
    path.parent.mkdir(parents=True)
    path.write_text("exceptions:\n  - check: CKV_K8S_40\n    reason: r\n    overlay: [split]\n")
    with pytest.raises(ConfigError,
                       match=r"scanner-exceptions.yaml:4: unknown key .exceptions.0.overlay."):
        scan.load_exceptions(tmp_path)


def test_every_spec_root_init_is_covered_by_a_root_init_exception() -> None:
    """A root init step's added capabilities are explained from its spec, not by name."""
    project = load_project(ROOT)
    roots = [s for s in load_services(ROOT, project, []) if s.init and
             s.init.root_in_user_namespace]
    entries = [e for e in scan.load_exceptions(ROOT) if e.root_init]
    for service in roots:
        finding = Finding("CKV_K8S_25", "", f"StatefulSet.ipabuild.{service.name}")
        reason = explain(finding, "split-userns", entries,
                         {service.name: service.init.reason})  # type: ignore[union-attr]
        assert service.init.reason in reason  # type: ignore[union-attr]


def _posture(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--root", str(ROOT), "posture", "--manifests-only",
                                       *args])
    return result.exit_code, result.output


def test_posture_without_checkov_says_so_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checkov, "find_checkov", lambda: None)
    status, output = _posture()
    assert status == 0, output
    notes = [line for line in output.splitlines() if "Checkov is not installed" in line]
    assert notes == ["Checkov is not installed: no independent scan "
                     "(pip install 'ipabuild[scan]')"]
    assert "split-userns: PSS restricted:" in output and "Traceback" not in output
    status, output = _posture("--json")
    document = json.loads(output)
    assert document["scanner"]["scanner"] == "" and document["scanner"]["note"]
    assert [o["overlay"] for o in document["scanner"]["overlays"]] == [
        "monolithic-userns", "split", "split-userns"]


def test_posture_html_has_the_scanner_tables(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    monkeypatch.setattr(checkov, "find_checkov", lambda: None)
    page = tmp_path / "posture.html"
    status, output = _posture("--modes", "split", "--html", str(page))
    assert status == 0, output
    html = page.read_text()
    assert '<table id="scanner">' in html and '<table id="findings">' in html
    assert "Checkov is not installed" in html and "<td>split-userns</td>" in html


def test_posture_rejects_an_unknown_mode() -> None:
    status, output = _posture("--modes", "split,mono")
    assert status == 2 and "unknown mode(s) mono" in output


def test_checkov_finds_a_broken_rule_and_nothing_explains_it() -> None:
    """The scanner really runs: a hostNetwork pod is a finding no exception covers."""
    argv = _checkov()
    pod = ("apiVersion: v1\nkind: Pod\nmetadata: {name: bad, namespace: ipabuild}\n"
           "spec:\n  hostNetwork: true\n  containers:\n  - {name: c, image: x@sha256:"
           + "0" * 64 + "}\n")
    found = checkov.scan_yaml(pod, argv, "bad")
    ids = {f.check_id for f in found.findings}
    assert "CKV_K8S_19" in ids and found.failed == len(found.findings) and found.passed > 0
    exceptions = scan.load_exceptions(ROOT)
    assert all(explain(f, "split", exceptions, {}) == "" for f in found.findings)


def test_every_checkov_finding_on_the_overlays_is_fixed_or_documented() -> None:
    project = load_project(ROOT)
    services = load_services(ROOT, project, [])
    report = scan.scan(ROOT, services, ["split", "split-userns", "monolithic-userns"],
                       _checkov())
    assert report.scanner.startswith("checkov 3.")
    assert [o.overlay for o in report.overlays] == ["split", "split-userns",
                                                    "monolithic-userns"]
    for overlay in report.overlays:
        assert overlay.passed > 50 and overlay.failed == len(overlay.findings)
        assert overlay.unexplained == [], [(f.check_id, f.resource)
                                           for f in overlay.unexplained]
        # fixed in the manifests: the namespace, NetworkPolicies, liveness, NET_RAW
        fixed = {"CKV_K8S_21", "CKV2_K8S_6", "CKV_K8S_8", "CKV_K8S_28", "CKV_K8S_37",
                 "CKV_K8S_15"}
        assert not fixed & {f.check_id for f in overlay.findings}, overlay.overlay


def test_pinned_by_digest_the_tag_findings_go(project_copy: Path) -> None:
    """After `manifests --digests-from PUSH.json` no image is named by a mutable tag."""
    argv = _checkov()
    services = load_services(ROOT, load_project(ROOT), [])
    push = project_copy / "push.json"
    push.write_text(json.dumps({"images": [
        {"service": s.name, "pushed_to": f"docker://127.0.0.1:5000/ipa/{s.name}:latest",
         "digest": "sha256:" + s.name.encode().hex().ljust(64, "0")} for s in services]}))
    result = CliRunner().invoke(main, ["--root", str(project_copy), "manifests",
                                       "--digests-from", str(push),
                                       "--monolith-digest", "sha256:" + "f" * 64])
    assert result.exit_code == 0, result.output
    report = scan.scan(project_copy, services, ["split", "split-userns", "monolithic-userns"],
                       argv)
    for overlay in report.overlays:
        ids = {f.check_id for f in overlay.findings}
        assert not ids & {"CKV_K8S_14", "CKV_K8S_43"}, overlay.overlay
        assert overlay.unexplained == []
