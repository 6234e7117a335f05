"""Privileged ports only by the namespaced sysctl (never a capability), only Kubernetes'
safe sysctls, the sysctl reaching podman, compose and the pod spec; the client toolbox
spec and how `ipabuild client` runs it."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from ipabuild.cli import main
from ipabuild.core.errors import UsageError
from ipabuild.emit.compose import render_compose
from ipabuild.emit.tree import ManifestOptions, render_manifests
from ipabuild.spec.load import load_project, load_services, service_names
from ipabuild.stack.client import client_service, plan_client_run
from ipabuild.stack.idranges import StackIds
from ipabuild.stack.plan import ServicePlan

ROOT = Path(__file__).resolve().parents[2]


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def _one_line_failure(root: Path, words: str) -> str:
    result = CliRunner().invoke(main, ["--root", str(root), "images", "--render-only",
                                       str(root / "out")])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert words in result.output, result.output
    return result.output


def test_privileged_port_without_the_sysctl_is_refused(project_copy: Path) -> None:
    spec = project_copy / "services/http/service.yaml"
    _edit(spec, 'net.ipv4.ip_unprivileged_port_start: "80"',
          'net.ipv4.ip_unprivileged_port_start: "443"')
    out = _one_line_failure(project_copy, "port 80 is privileged")
    assert "services/http/service.yaml" in out


def test_unsafe_sysctl_is_refused(project_copy: Path) -> None:
    spec = project_copy / "services/http/service.yaml"
    _edit(spec, "sysctls:\n", "sysctls:\n  net.ipv4.ip_forward: \"1\"\n")
    _one_line_failure(project_copy, "net.ipv4.ip_forward is not in Kubernetes' safe sysctl set")


def test_the_sysctl_reaches_podman_compose_and_the_pod() -> None:
    project = load_project(ROOT)
    services = load_services(ROOT, project, [])
    http = next(s for s in services if s.sysctls)
    plan = ServicePlan("s", http, "img", project.domain, "net",
                       StackIds(uids={http.name: 2_000_000_001},
                                ports={f"{http.name}:{p.port}": 20000 for p in http.ports}))
    args = plan.create_args({s.name: s.name for s in http.secrets},
                            {name: "10.0.0.1" for name in plan.names()})
    assert args["sysctls"] == {"net.ipv4.ip_unprivileged_port_start": "80"}
    assert "cap_add" not in args and args["cap_drop"] == ["ALL"]
    assert "net.ipv4.ip_unprivileged_port_start" in render_compose(project, services)
    built = render_manifests(project, services, ManifestOptions("r", "t"))
    pod = next(text for path, text in built.items()
               if path.endswith(f"overlays/split/{http.name}.yaml"))
    assert "name: net.ipv4.ip_unprivileged_port_start" in pod


def test_client_toolbox_is_built_by_default_but_never_deployed() -> None:
    project = load_project(ROOT)
    toolbox = client_service(load_services(ROOT, project, service_names(ROOT)))
    assert not toolbox.ports and not toolbox.volumes and not toolbox.secrets
    assert toolbox.name not in {s.name for s in load_services(ROOT, project, [])}
    assert toolbox.name in {s.name for s in load_services(ROOT, project, [],
                                                          modes=("split", "client"))}
    assert toolbox.name not in render_compose(project, load_services(ROOT, project, []))


def test_client_run_joins_the_stack_network_unprivileged() -> None:
    project = load_project(ROOT)
    toolbox = client_service(load_services(ROOT, project, service_names(ROOT)))
    run = plan_client_run(project, toolbox, "tenant1", "v1", ["http:10.0.0.13"], False,
                          {"IPA_CA_FILE": "/run/ipabuild/ca.pem"},
                          ("/tmp/ca.pem:/run/ipabuild/ca.pem:ro",))
    argv = run.argv(["ipa", "ping"])
    assert argv[:4] == ["podman", "run", "--rm", "-i"] and "-t" not in argv
    assert argv[argv.index("--network") + 1] == "ipabuild-tenant1"
    assert {"--read-only", "--add-host=http:10.0.0.13", "IPA_CA_FILE",
            "/tmp/ca.pem:/run/ipabuild/ca.pem:ro"} <= set(argv)
    assert not any("/run/ipabuild/ca.pem" in a and "=" in a for a in argv), "value in argv"
    assert run.process_environment({"PATH": "/bin"})["IPA_CA_FILE"] == "/run/ipabuild/ca.pem"
    assert argv[argv.index("--cap-drop") + 1] == "ALL"
    assert argv[-3:] == [f"{project.image.prefix}/{toolbox.name}:v1", "ipa", "ping"]


def test_client_needs_a_running_stack() -> None:
    project = load_project(ROOT)
    toolbox = client_service(load_services(ROOT, project, service_names(ROOT)))
    with pytest.raises(UsageError, match="is not running"):
        plan_client_run(project, toolbox, "nothing", "latest", [], True)


def test_two_client_specs_are_refused(project_copy: Path) -> None:
    (project_copy / "services/client2").mkdir()
    (project_copy / "services/client2/service.yaml").write_text(
        (project_copy / "services/client/service.yaml").read_text())
    (project_copy / "services/client2/entrypoint.sh").write_text("#!/bin/sh\n")
    project = load_project(project_copy)
    with pytest.raises(UsageError, match="exactly one `mode: client`"):
        client_service(load_services(project_copy, project, service_names(project_copy)))
