"""The monolith (split mode's services in one container under a supervisor, its root
daemons root as upstream's are) run in a user namespace of its own: it serves the same
identity checks, passes verify although its processes are root inside, and the posture
report puts it beside split from measurements. The IPA tests that take ``ipa_client``
(realm, API, certificates) run against it too."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from tests.integration.conftest import MONOLITH_POLL, ROOT, ipabuild
from tests.integration.stack_client import Client

KINIT_ADMIN = 'printf "%s" "$PW" | kinit admin >/dev/null'


@pytest.fixture(scope="module")
def mono_client(monolith: str) -> Client:
    return Client(monolith, ROOT / ".ipabuild" / "secrets" / monolith)


def test_monolith_serves_kinit_spnego_and_gssapi(mono_client: Client) -> None:
    env = {"PW": mono_client.secret("admin-password")}
    result = mono_client.run(
        f"{KINIT_ADMIN} && curl -sSk --negotiate -u : https://http.example.test/ipa/whoami"
        " && ldapwhoami -N -Y GSSAPI -H ldap://ldap.example.test:3389", env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "admin@EXAMPLE.TEST" in result.stdout
    assert "dn: uid=admin,cn=users,cn=accounts,dc=example,dc=test" in result.stdout


def test_spnego_outlives_http_renewing_its_own_ticket(monolith: str,
                                                      mono_client: Client) -> None:
    """httpd's master (root) makes HTTP/'s ticket again every poll; its workers (www-data,
    group 0) must still read it: once kinit left it mode 0600 and every SPNEGO login
    failed ("SPNEGO cannot find mechanisms") five minutes after start."""
    if os.environ.get("IPABUILD_TEST_MONOLITH"):
        pytest.skip("needs the fixture's short IPABUILD_CERT_POLL")
    stat = ["podman", "exec", f"ipabuild-{monolith}-monolithic", "ipabuild-monolith", "exec",
            "http", "--", "stat", "-c", "%Y %a", "/tmp/ipabuild-http/http.ccache"]
    first = subprocess.run(stat, capture_output=True, text=True, check=True).stdout.split()
    deadline = time.monotonic() + 3 * MONOLITH_POLL
    while (now := subprocess.run(stat, capture_output=True, text=True,
                                 check=True).stdout.split())[0] == first[0]:
        assert time.monotonic() < deadline, "http never made its ticket again"
        time.sleep(2)
    assert now[1] == "660", now  # group-readable and -writable, as the workers need
    env = {"PW": mono_client.secret("admin-password")}
    result = mono_client.run(
        f"{KINIT_ADMIN} && curl -sSk --negotiate -u : https://http.example.test/ipa/whoami",
        env=env)
    assert result.returncode == 0 and "admin@EXAMPLE.TEST" in result.stdout, (
        result.stdout[-1000:] + result.stderr[-2000:])


def test_monolith_is_root_inside_but_not_on_the_host(monolith: str) -> None:
    probe = ipabuild("probe", f"ipabuild-{monolith}-monolithic", "--json")
    assert probe.returncode == 0, probe.stdout[-2000:]
    processes = json.loads(probe.stdout)["processes"]
    assert any(p["uids_container"][1] == 0 for p in processes), "expected root inside"
    for p in processes:
        assert p["own_user_namespace"] and 0 not in p["uids_host"]
        assert not p["map_reaches_host_root"]
    verify = ipabuild("verify", "--name", monolith)
    assert verify.returncode == 0, verify.stdout[-3000:]


def test_posture_compares_both_modes(monolith: str, stack: str) -> None:
    result = ipabuild("posture", "--modes", "monolithic,split", "--name",
                      f"{monolith},{stack}", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    modes = {row["mode"] for row in report["containers"]}
    assert {"monolithic", "split"} <= modes
    mono = [r for r in report["containers"] if r["mode"] == "monolithic"]
    split = [r for r in report["containers"] if r["mode"] == "split"]
    # Root inside the monolith; none in the server name's proxy in front of it.
    assert all(r["root_in_container_processes"] > 0 for r in mono if r["service"] == "monolithic")
    assert [r["root_in_container_processes"] for r in mono if r["service"] == "server"] == [0]
    assert sum(r["root_in_container_processes"] for r in split) == 0
    assert all(r["host_root_processes"] == 0 for r in mono + split)
    assert not any(line.endswith("not measured") for line in report["summary"])


def test_monolith_blast_radius(monolith: str) -> None:
    """What a compromised monolith daemon reaches, measured from inside as its UID: the
    root daemons (its supervisor, krb5kdc, httpd's parent) every secret and every key on
    /data; a non-root daemon only what its own view holds (its chroot, its binds); the
    summary line is computed from those cells."""
    result = ipabuild("posture", "--modes", "monolithic", "--name", monolith, "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    matrix = next(m for m in report["blast_radius"] if m["mode"] == "monolithic")
    secrets = [c["id"] for c in matrix["columns"] if c["kind"] == "secret"]
    keys = [c["id"] for c in matrix["columns"] if c["kind"] == "key"]
    assert len(secrets) >= 7 and keys
    root = [r for r in matrix["rows"] if r["daemon"]["uid"] == 0]
    assert root, "no daemon runs as root inside the monolith"
    for row in root:
        assert not row["error"], row["error"]
        assert all(row["cells"][s] in ("read", "read+write") for s in secrets + keys)
    # Root in a service's chroot holds CAP_SYS_CHROOT there, so its tree does not hold
    # it: such rows are measured in the container's view (and read everything, above).
    assert any(r["daemon"]["root"] and not r["daemon"]["pid"] for r in root)
    # A non-root daemon is tried in its own view (its tree, its volumes, its copies of its
    # secrets): it reaches no file on another service's part of /data.
    confined = [r for r in matrix["rows"] if r["daemon"]["pid"]]
    assert {r["daemon"]["uid"] for r in confined} and all(r["daemon"]["uid"] for r in confined)
    labels = {c["id"]: c["label"] for c in matrix["columns"] if c["kind"] == "key"}
    for row in confined:
        own = f"monolithic:/data/{row['daemon']['root'].rsplit('/', 1)[1]}/"
        others = [k for k, label in labels.items()
                  if label.startswith("monolithic:/data/") and not label.startswith(own)]
        assert others and all(row["cells"][k] == "none" for k in others), row["label"]
        # ... and still its own keys, where its view has them (the tries were made).
        assert any(row["cells"][k] != "none" for k in labels), row["label"]
    line = next(s for s in report["summary"] if s.startswith("blast radius, monolithic: "))
    assert f"all {len(secrets)} secrets" in line
