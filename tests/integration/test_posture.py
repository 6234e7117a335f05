"""``ipabuild posture`` reports measured facts: a changed fact changes the report, and the
HTML page renders in a real headless Chromium."""

from __future__ import annotations

import json
import os
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
    # No private user namespace, not even the CA's (its init runs as its own UID now).
    assert {row["user_namespace"] for row in rows.values()} == {"host's"}
    assert all(row["root_in_container_processes"] == 0 for row in rows.values())
    assert 3389 in rows["ldap"]["listening_ports"]
    assert any(line.startswith("monolithic: not measured") for line in report["summary"])
    assert any(line.startswith("split: no process runs as UID 0 in any user namespace, "
                               "at any time") for line in report["summary"]), report["summary"]
    # The split's one exception, as the spec declares it: the KDC acting as Directory
    # Manager over the shared LDAPI socket. The CA's root init is gone.
    assert rows["ca"]["declared_exceptions"] == ""
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


# ---- blast radius: what a compromised daemon's UID reaches, measured from inside ------

ARTIFACTS = Path(__file__).resolve().parents[2] / ".ipabuild" / "artifacts"


@pytest.fixture(scope="module")
def split_stack(request: pytest.FixtureRequest) -> str:
    """A developer's running split stack (IPABUILD_TEST_STACK, which needs no image build),
    else the session's shared stack."""
    return os.environ.get("IPABUILD_TEST_STACK") or request.getfixturevalue("stack")


def _blast(report: dict, mode: str) -> tuple[dict[str, str], list[dict]]:
    """The mode's matrix: column label -> column id, and its rows."""
    matrix = next(m for m in report["blast_radius"] if m["mode"] == mode)
    return {c["label"]: c["id"] for c in matrix["columns"]}, matrix["rows"]


def _rows_of(rows: list[dict], service: str) -> list[dict]:
    found = [r for r in rows if r["daemon"]["service"] == service]
    assert found, f"no daemon of {service} measured"
    return found


def test_blast_radius_of_the_split_stack(split_stack: str) -> None:
    report = posture(split_stack)
    columns, rows = _blast(report, "split")
    for row in rows:
        assert not row["error"], row["error"]
    http, = _rows_of(rows, "http")
    ldap, = _rows_of(rows, "ldap")
    kdc, = _rows_of(rows, "kdc")
    assert http["probe_ids"].startswith(f"{http['daemon']['uid']}:0 ")
    # http reads its own seeds and keys, never the directory's or the KDC's secrets.
    for own in ("http-tls-key-seed", "ra-agent-key-seed", "http-session-key",
                "http-service-password"):
        assert http["cells"][columns[own]] == "read", own
    for foreign in ("ldap-dm-password", "kdc-master-key", "ca-admin-password"):
        assert http["cells"][columns[foreign]] == "none", foreign
    http_keys = [i for label, i in columns.items() if label.startswith("http:")
                 and i.startswith("key:")]
    assert http_keys and all(http["cells"][k] != "none" for k in http_keys)
    # ldap reads the Directory Manager password; the kdc does not, yet reaches the LDAPI
    # socket (the declared exception: 389-ds takes its GID-0 peer for Directory Manager).
    assert ldap["cells"][columns["ldap-dm-password"]] == "read"
    assert kdc["cells"][columns["ldap-dm-password"]] == "none"
    sockets = [i for i in columns.values() if i.startswith("socket:")]
    assert sockets and all(kdc["cells"][s] == "connect" for s in sockets)
    assert all(http["cells"][s] == "none" for s in sockets)
    # What the kdc reaches through the directory, measured by reading it: as Directory
    # Manager, every password hash and every principal's Kerberos keys (its own rows,
    # counted in the summary); http, without the socket, none of it.
    directory = {label: i for label, i in columns.items() if ":directory/" in label}
    assert sorted(label.split("/")[1].split()[0] for label in directory) == [
        "krbPrincipalKey", "userPassword"], directory
    for i in directory.values():
        assert kdc["cells"][i] == "read", (i, kdc["details"].get(i))
        assert http["cells"][i] == "none", i
    line = next(s for s in report["summary"] if s.startswith("blast radius, split: "))
    assert "any daemon" not in line and "http " in line


def test_blast_radius_heat_map_in_headless_chromium(split_stack: str, tmp_path: Path) -> None:
    """The HTML's two matrices, side by side, rendered by a real browser; the screenshot
    is kept as the test's artefact."""
    try:
        from selenium import webdriver
        from selenium.webdriver.common.by import By
    except ImportError:
        pytest.fail("selenium is missing: pip install -e '.[test]' (scripts/setup-host.sh)")
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.fail("chromium and chromium-driver are needed (scripts/setup-host.sh)")
    page = tmp_path / "posture.html"
    # Beside a developer's running monolith when there is one (IPABUILD_TEST_MONOLITH).
    stacks = ",".join(filter(None, [split_stack, os.environ.get("IPABUILD_TEST_MONOLITH")]))
    result = ipabuild("posture", "--modes", "monolithic,split", "--name", stacks,
                      "--html", str(page), "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--window-size=1600,1200", "--hide-scrollbars",
                 f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options,
                              service=webdriver.ChromeService(executable_path=driver_path))
    try:
        driver.get(page.as_uri())
        driver.find_element(By.ID, "blast-split")
        maps = driver.find_element(By.CSS_SELECTOR, "div.blast")  # both modes, side by side
        width, height = driver.execute_script(
            "return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
        driver.set_window_size(max(1600, width + 50), max(1200, height + 50))
        driver.execute_script("arguments[0].scrollIntoView()", maps)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "posture-blast-radius.png"
        maps.screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        red = driver.find_elements(By.CSS_SELECTOR, "#blast-split td.c-read, "
                                                    "#blast-split td.c-read-write")
        assert red and red[0].value_of_css_property("background-color") != \
            driver.find_element(By.CSS_SELECTOR, "#blast-split td.c-none") \
                  .value_of_css_property("background-color")
    finally:
        driver.quit()


def test_one_more_mounted_secret_changes_the_matrix(split_stack: str, sandbox: Sandbox) -> None:
    """A container of the stack that mounts one more secret (a throwaway one, at the
    Directory Manager password's path) gets a row that reads it, and the summary says so."""
    image = sh(["podman", "inspect", f"ipabuild-{split_stack}-kdc", "--format",
                "{{.ImageName}}"]).stdout.strip()
    secret = sandbox.secret("dm", "not-the-real-one")
    name = f"ipabuild-{split_stack}-extra{uuid.uuid4().hex[:4]}"
    sh(["podman", "run", "-d", "--name", name, "--label", f"io.ipabuild.stack={split_stack}",
        "--label", "io.ipabuild.service=extra", "--label", "io.ipabuild.mode=split",
        "--user", "1234567:0",
        "--secret", f"{secret},target=ldap-dm-password,uid=1234567,mode=0400",
        "--entrypoint", "sleep", image, "300"])
    sandbox.containers.append(name)
    report = posture(split_stack)
    columns, rows = _blast(report, "split")
    extra, = _rows_of(rows, "extra")
    assert extra["cells"][columns["ldap-dm-password"]] == "read"
    assert extra["cells"][columns["kdc-master-key"]] == "none"
    line = next(s for s in report["summary"] if s.startswith("blast radius, split: "))
    assert f"extra sleep → 1 of {sum(1 for i in columns.values() if i.startswith('secret:'))}" \
           " secrets" in line
