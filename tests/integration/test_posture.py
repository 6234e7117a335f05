"""``ipabuild posture`` reports measured facts: a changed fact changes the report, and the
HTML page renders in a real headless Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.integration.conftest import ipabuild
from tests.integration.podman_cli import Sandbox, sh


def posture(stack: str, *extra: str) -> dict:
    result = ipabuild("posture", "--modes", "monolithic,split", "--name", stack, "--json", *extra)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def test_split_posture_is_measured(stack: str) -> None:
    report = posture(stack)
    rows = {r["service"]: r for r in report["containers"]}
    assert {"ldap", "kdc", "http", "ca"} <= set(rows)
    for row in rows.values():
        assert row["host_root_processes"] == 0
        assert row["capabilities"] == [] and row["no_new_privs"] and row["read_only_root"]
        assert row["secrets_in_env"] == [] and row["image"]["setid_files"] == []
        assert row["image"]["packages"] > 10 and row["image"]["size_bytes"] > 10_000_000
    assert rows["ca"]["user_namespace"] == "own" and rows["ldap"]["user_namespace"] == "host's"
    assert 3389 in rows["ldap"]["listening_ports"]
    assert any(line.startswith("monolithic: not measured") for line in report["summary"])
    # The split's two exceptions, as the specs declare them: the CA's root init step and
    # the KDC acting as Directory Manager over the shared LDAPI socket.
    assert "pkispawn" in rows["ca"]["declared_exceptions"]
    assert "Directory Manager" in rows["kdc"]["declared_exceptions"]
    assert any(line.startswith("split: declared exception of kdc:")
               for line in report["summary"])
    assert report["manifests"]["split"], "no workloads from the split-userns overlay"


def test_an_added_capability_changes_the_report(stack: str, built: dict[str, dict],
                                                sandbox: Sandbox) -> None:
    name = f"ipabuild-{stack}-extra{uuid.uuid4().hex[:4]}"
    sh(["podman", "run", "-d", "--name", name, "--label", f"io.ipabuild.stack={stack}",
        "--label", "io.ipabuild.service=extra", "--label", "io.ipabuild.mode=split",
        "--user", "1234567:0", "--cap-add", "NET_RAW", "--entrypoint", "sleep",
        built["kdc"]["name"], "300"])
    sandbox.containers.append(name)
    rows = {r["container"]: r for r in posture(stack)["containers"]}
    assert rows[name]["capabilities"] == ["net_raw"]
    assert rows[name]["no_new_privs"] is False
    assert any("net_raw" in line for line in posture(stack)["summary"])


def test_html_report_renders_in_headless_chromium(stack: str, tmp_path: Path) -> None:
    browser = shutil.which("chromium")
    if browser is None:
        pytest.fail("chromium is not installed (scripts/setup-host.sh installs it)")
    page = tmp_path / "posture.html"
    posture(stack, "--html", str(page))
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False).stdout
    assert '<table id="posture">' in dom
    assert dom.count(f"ipabuild-{stack}-") >= 4
    assert "Security posture: monolithic vs split" in dom
