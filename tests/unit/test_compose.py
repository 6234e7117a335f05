"""compose/compose.yaml is generated from the specs: deterministic and committed current."""

from __future__ import annotations

from pathlib import Path

import yaml

from ipabuild.emit.compose import COMPOSE_FILE, compose_document, render_compose
from ipabuild.spec.load import load_project, load_services

ROOT = Path(__file__).resolve().parents[2]


def test_committed_compose_is_what_the_specs_produce() -> None:
    project = load_project(ROOT)
    services = load_services(ROOT, project, [])
    text = render_compose(project, services)
    assert text == render_compose(project, services)
    assert (ROOT / COMPOSE_FILE).read_text() == text, "run `ipabuild compose`"


def test_every_service_is_unprivileged_in_compose() -> None:
    project = load_project(ROOT)
    document = compose_document(project, load_services(ROOT, project, []))
    for name, entry in document["services"].items():
        uid = int(entry["user"].split(":")[0])
        if name.endswith("-init"):
            continue
        assert uid != 0 and entry["read_only"] and entry["cap_drop"] == ["ALL"], name
        assert "environment" not in entry or not any(
            "PASSWORD" in key.upper() for key in entry["environment"]), name


def test_compose_changes_when_a_spec_changes(project_copy: Path) -> None:
    project = load_project(project_copy)
    before = render_compose(project, load_services(project_copy, project, []))
    spec = project_copy / "services/kdc/service.yaml"
    spec.write_text(spec.read_text().replace("port: 8749", "port: 8750"))
    after = render_compose(project, load_services(project_copy, project, []))
    assert before != after
    assert "8750" in yaml.safe_load(after.split("\n", 3)[3])["services"]["kdc"]["ports"][-1]


def test_every_container_finds_its_peers_without_dns() -> None:
    # aardvark-dns stalls while containers join (a compose kdc waited 240 s for `ldap`):
    # each daemon has a fixed address and every container an /etc/hosts line per peer name.
    project = load_project(ROOT)
    document = compose_document(project, load_services(ROOT, project, []))
    daemons = {name: entry for name, entry in document["services"].items()
               if not name.endswith("-init")}
    addresses = {name: entry["networks"]["ipa"]["ipv4_address"]
                 for name, entry in daemons.items()}
    assert len(set(addresses.values())) == len(addresses), addresses
    subnet = document["networks"]["ipa"]["ipam"]["config"][0]["subnet"]
    assert all(a.rsplit(".", 1)[0] == subnet.rsplit(".", 1)[0] for a in addresses.values())
    for name, entry in document["services"].items():
        hosts = dict(line.split(":", 1) for line in entry["extra_hosts"])
        for peer, peer_entry in daemons.items():
            for alias in peer_entry["networks"]["ipa"]["aliases"]:
                expected = addresses[peer]
                if name.endswith("-init") and peer == name.removesuffix("-init"):
                    expected = "127.0.0.1"  # the one-time step reaches itself locally
                assert hosts[alias] == expected, (name, alias)
        if name.endswith("-init"):  # it runs beside its daemon: not on the daemon's address
            assert "ipv4_address" not in entry["networks"]["ipa"], name


def test_nothing_depends_on_a_one_time_init() -> None:
    """podman-compose makes a dependency podman's --requires and waits for it to be
    running, which never happens again for an init that has exited: ``up -d`` on
    existing volumes hung (the daemon waits for its init's marker itself)."""
    services = yaml.safe_load((ROOT / "compose" / "compose.yaml").read_text())["services"]
    inits = {name for name in services if name.endswith("-init")}
    assert inits
    for name, service in services.items():
        assert not inits & set(service.get("depends_on", [])), name


def test_compose_publishes_tcp_only() -> None:
    """podman 4.3 picks a UDP publish's host port by probing TCP (``stack.hostports``):
    compose leaves UDP unpublished rather than fail one start in so many."""
    services = yaml.safe_load((ROOT / "compose" / "compose.yaml").read_text())["services"]
    published = [p for s in services.values() for p in s.get("ports", [])]
    assert published and all(p.startswith("127.0.0.1::") for p in published)
    assert not [p for p in published if p.endswith("/udp")]
    assert "127.0.0.1::8088/tcp" in services["kdc"]["ports"]
