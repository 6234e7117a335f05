"""The monolith's supervisor (services/monolithic/supervisor.py and monolith_trees.py)
reading what the builder renders from the real specs (render.monolith_config): each
service's mounts, where its state lives, its user, the order it starts in. Starting the
services is proven by the monolith's integration tests; here the plan they follow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from service_modules import ROOT, load

from ipabuild.build.render import monolith_config
from ipabuild.spec.load import load_project, load_service

trees = load("services/monolithic/monolith_trees.py")  # what supervisor.py imports
supervisor = load("services/monolithic/supervisor.py")


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = load_project(ROOT)
    monolith = load_service(ROOT, "monolithic", project)
    parts = [(part, load_service(ROOT, part.service, project)) for part in monolith.runs]
    path = tmp_path_factory.mktemp("monolith") / "monolith.json"
    path.write_text(json.dumps(monolith_config(project, parts)))
    return path


@pytest.fixture
def parts(config_file: Path) -> list:
    return trees.load(config_file)


def part(parts: list, name: str):  # type: ignore[no-untyped-def]
    return next(p for p in parts if p.name == name)


def test_every_service_of_split_mode_runs_from_its_own_tree(parts: list) -> None:
    assert [p.name for p in parts] == ["ldap", "kdc", "ca", "http"]
    assert all(p.root == f"/srv/{p.name}" and p.command for p in parts)
    assert part(parts, "ca").init, "the CA's one-time init runs before it"
    assert part(parts, "kdc").environment["KRB5_CONFIG"] == "/tmp/ipabuild-kdc/krb5.conf"
    assert part(parts, "ldap").environment["IPA_REALM"] == "EXAMPLE.TEST"


def test_state_lives_on_data_and_sockets_on_the_runtime_tmpfs(parts: list) -> None:
    assert trees.volume_source(parts, "ca", "data") == Path("/data/ca/data")
    ldapi = trees.volume_source(parts, "ldap", "ldapi")
    assert ldapi.is_relative_to(trees.RUNTIME)
    kdc_binds = {b.target: b.source for b in trees.binds(parts, part(parts, "kdc"))}
    assert kdc_binds["/run/ipa-ldapi"] == str(ldapi), "the kdc shares ldap's LDAPI socket"


def test_binds_mount_parents_first_and_secrets_per_service(parts: list) -> None:
    http = trees.binds(parts, part(parts, "http"))
    targets = [b.target for b in http]
    assert targets.index("/run") < targets.index("/run/ipa") < targets.index("/run/secrets")
    assert targets[:3] == ["/dev", "/proc", "/sys"]
    secrets = next(b for b in http if b.target == "/run/secrets")
    assert secrets.source.startswith(str(trees.RUNTIME / "http"))
    assert {b.target for b in http if b.is_file} == set(trees.SHARED_FILES)


def test_start_order_waits_for_dependencies(parts: list) -> None:
    running = supervisor.Supervisor(parts)
    http, ca, ldap = part(parts, "http"), part(parts, "ca"), part(parts, "ldap")
    assert running.ready(ldap)
    assert not running.ready(ca)
    running.started.add("ldap")
    assert running.ready(ca), "ca needs ldap started only"
    running.started |= {"kdc", "ca"}
    running.healthy |= {"ldap", "kdc"}
    assert running.ready(http)


def test_users_come_from_each_tree(parts: list, tmp_path: Path) -> None:
    ldap = part(parts, "ldap")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n"
                                         "dirsrv:x:100:101::/var/lib/dirsrv:/bin/false\n")
    ldap.root = str(tmp_path)
    assert ldap.ids() == (100, 0), "upstream's user, in group 0 as split mode runs it"
    assert part(parts, "kdc").ids() == (0, 0)
    ldap.user = "nobody-here"
    with pytest.raises(SystemExit, match="no user 'nobody-here'"):
        ldap.ids()


def test_mountpoints_are_made_in_the_tree_except_under_tmpfs(parts: list,
                                                             tmp_path: Path) -> None:
    for p in parts:
        p.root = str(tmp_path / p.name)
    made = trees.make_mountpoints(parts)
    assert str(tmp_path / "ca/var/lib/pki") in made
    assert (tmp_path / "ldap/etc/hosts").is_file()
    assert not (tmp_path / "ldap/run/ipa-ldapi").exists(), "made at start, on the tmpfs"
    assert trees.make_mountpoints(parts) == [], "a second run finds them all"


def test_identity_map_covers_the_container() -> None:
    size = trees.identity_map_size()
    assert size >= 1
    line = [int(x) for x in Path("/proc/self/uid_map").read_text().split()[:3]]
    assert line[0] == 0 and line[2] == size


def test_a_service_that_ends_is_started_again_within_a_start_limit() -> None:
    """Like systemd's Restart=on-failure with its start limit: five starts within a
    minute, the sixth is refused (the container then ends), and old starts age out."""
    budget = supervisor.RestartBudget(burst=5, window=60.0)
    assert all(budget.allows(float(t)) for t in range(5))
    assert not budget.allows(5.0)
    assert budget.allows(200.0), "a minute later it may start again"


def test_run_time_settings_reach_the_services_they_concern(parts: list) -> None:
    """`ipabuild up --env` sets the monolith's environment: the project's IPABUILD_* knobs
    and overrides of a service's declared settings pass on; the rest of the container's
    environment does not."""
    kdc = part(parts, "kdc")
    env = trees.part_environment(kdc, {"IPABUILD_CERT_POLL": "20", "TERM": "xterm",
                                            "KRB5_CONFIG": "/tmp/other.conf"})
    assert env["IPABUILD_CERT_POLL"] == "20" and env["KRB5_CONFIG"] == "/tmp/other.conf"
    assert "TERM" not in env and env["IPA_REALM"] == "EXAMPLE.TEST"
