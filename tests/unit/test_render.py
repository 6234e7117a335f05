"""Rendering: every service for every family matches its golden Containerfile; the cache key
moves exactly when the build context or the base moves.

Regenerate the golden files after an intended change with
``UPDATE_GOLDEN=1 pytest tests/unit/test_render.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ipabuild.build.bases import base_reference, mmdebstrap_argv
from ipabuild.build.render import customize, render_service
from ipabuild.build.results import cache_key, failed_step, stage_tag
from ipabuild.build.stages import with_stages
from ipabuild.core.errors import ConfigError
from ipabuild.spec.load import load_project, load_services, service_names
from ipabuild.spec.model import PackageOverride

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
PROJECT = load_project(ROOT)
CASES = [
    (family, name)
    for name in service_names(ROOT)
    for family in PROJECT.families
    if family in load_services(ROOT, PROJECT, [name])[0].families
]


def render(root: Path, family: str, name: str):
    project = load_project(root)
    service = load_services(root, project, [name])[0]
    base = base_reference(project, family, service.families[family].base)
    return render_service(root, project, service, family, base)


def test_every_service_renders_for_both_families() -> None:
    names = {name for _, name in CASES}
    assert {"ldap", "kdc", "http"} <= names
    for name in names:
        families = {family for family, n in CASES if n == name}
        assert families == {"debian", "fedora"}, name


@pytest.mark.parametrize(("family", "name"), CASES)
def test_containerfile_matches_golden(family: str, name: str) -> None:
    context = render(ROOT, family, name)
    golden = GOLDEN / family / f"{name}.Containerfile"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(context.containerfile)
    assert context.containerfile == golden.read_text()


RUNNABLE = [(family, name) for family, name in CASES
            if load_services(ROOT, PROJECT, [name])[0].mode != "stage"]


@pytest.mark.parametrize(("family", "name"), RUNNABLE)
def test_contract_steps_present(family: str, name: str) -> None:
    text = render(ROOT, family, name).containerfile
    user_line = next(line for line in text.splitlines() if line.startswith("USER "))
    uid, gid = user_line.split()[1].split(":")
    mode = load_services(ROOT, PROJECT, [name])[0].mode
    assert uid.isdigit() and gid == "0"
    assert int(uid) > 0 or mode == "monolithic", "only the monolith may run as root"
    assert "chmod ug-s" in text
    assert "HEALTHCHECK" in text or mode == "client", "every deployed service has a health check"
    assert "password" not in text.lower().replace("password_file", "")


def test_cache_key_follows_templates(project_copy: Path) -> None:
    before = render(project_copy, "debian", "kdc")
    same = render(project_copy, "debian", "kdc")
    assert cache_key(before, "base1") == cache_key(same, "base1")
    assert cache_key(before, "base1") != cache_key(before, "base2")
    acl = project_copy / "services/kdc/kadm5.acl.j2"
    acl.write_text(acl.read_text() + "# changed\n")
    after = render(project_copy, "debian", "kdc")
    assert cache_key(after, "base1") != cache_key(before, "base1")
    untouched = render(project_copy, "debian", "http")
    assert untouched.content_key == render(ROOT, "debian", "http").content_key


def test_file_modes_are_part_of_the_key(project_copy: Path) -> None:
    before = render(project_copy, "debian", "kdc").content_key
    spec = project_copy / "services/kdc/service.yaml"
    spec.write_text(spec.read_text().replace(
        "dest: /usr/local/bin/ipabuild-kdc-health, mode: \"0755\"",
        "dest: /usr/local/bin/ipabuild-kdc-health, mode: \"0750\""))
    assert render(project_copy, "debian", "kdc").content_key != before


def test_written_context_keeps_modes(tmp_path: Path) -> None:
    context = render(ROOT, "debian", "ldap")
    context.write(tmp_path / "ctx")
    entry = tmp_path / "ctx/rootfs/usr/local/bin/ipabuild-ldap"
    assert entry.stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "ctx/Containerfile").read_text() == context.containerfile


def test_customize_override_append_remove() -> None:
    base = ["a", "b", "c"]
    assert customize(base, None) == base
    assert customize(base, PackageOverride(append=["d", "a"], remove=["b"])) == ["a", "c", "d"]
    assert customize(base, PackageOverride(override=["x"], append=["y"])) == ["x", "y"]


def test_overrides_reach_the_containerfile(project_copy: Path) -> None:
    config = project_copy / "ipabuild.yaml"
    config.write_text(config.read_text().replace(
        "overrides: {}",
        "overrides:\n  kdc:\n    debian: {append: [strace], remove: [ldap-utils]}"))
    text = render(project_copy, "debian", "kdc").containerfile
    install = next(line for line in text.splitlines() if "krb5-kdc" in line)
    assert "strace" in install and "ldap-utils" not in install


def test_failed_step_is_the_last_step_line() -> None:
    log = "STEP 1/3: FROM x\nok\nSTEP 2/3: RUN apt-get install y\nE: Unable to locate package y\n"
    assert failed_step(log) == "STEP 2/3: RUN apt-get install y"
    assert failed_step("Error: no Containerfile") == "before the first build step"


def test_mmdebstrap_command_for_bullseye() -> None:
    bootstrap = PROJECT.families["debian"].bases["bullseye"].bootstrap
    assert bootstrap is not None
    argv = mmdebstrap_argv(bootstrap, Path("/tmp/b.tar"))
    assert argv[0] == "mmdebstrap" and "--variant=minbase" in argv
    assert "deb http://deb.debian.org/debian bullseye-updates main" in argv
    assert not any("security" in a for a in argv)


def test_fedora_base_is_a_registry_reference() -> None:
    assert base_reference(PROJECT, "fedora", "fedora") == "registry.fedoraproject.org/fedora:43"
    assert base_reference(PROJECT, "debian", "trixie").startswith("localhost/ipabuild/base-")


@pytest.mark.parametrize(("kind", "filename"), [("project", "ipabuild.schema.json"),
                                                ("service", "service.schema.json")])
def test_published_json_schema_is_current(kind: str, filename: str) -> None:
    import json

    from ipabuild.spec.load import json_schema

    committed = json.loads((ROOT / "docs/schema" / filename).read_text())
    assert committed == json_schema(kind), f"regenerate: ipabuild schema {kind}"


def test_stage_is_built_before_its_consumers_and_only_when_needed(project_copy: Path) -> None:
    """A spec that copies from a stage pulls the stage in first; others do not."""
    project = load_project(project_copy)
    services = load_services(project_copy, project, ["kdc", "monolithic"])
    stages, others = with_stages(project_copy, project, "debian", services)
    assert [s.name for s in stages] == ["framework"]
    assert [s.name for s in others] == ["kdc", "monolithic"]
    refs = {"framework": stage_tag(project, "framework", "ab" * 32)}
    kdc = render_service(project_copy, project, others[0], "debian", "base", stage_refs=refs)
    assert (f"COPY --from={refs['framework']} /opt/freeipa/usr/lib/x86_64-linux-gnu/krb5/"
            "plugins/kdb/ipadb.so" in kdc.containerfile)
    # The stage's content key is in the consumer's Containerfile, so in its cache key.
    other = render_service(project_copy, project, others[0], "debian", "base",
                           stage_refs={"framework": stage_tag(project, "framework", "cd" * 32)})
    assert other.content_key != kdc.content_key
    assert with_stages(project_copy, project, "debian", [services[1]])[0] == []


def test_copy_from_a_runnable_service_is_refused(project_copy: Path) -> None:
    spec = project_copy / "services/kdc/service.yaml"
    spec.write_text(spec.read_text().replace("{stage: framework,", "{stage: ldap,", 1))
    project = load_project(project_copy)
    with pytest.raises(ConfigError, match="mode: stage"):
        with_stages(project_copy, project, "debian", load_services(project_copy, project, ["kdc"]))


def test_every_patch_under_services_goes_into_its_image() -> None:
    """A patch file the spec does not list would be silently left out of the build."""
    from ipabuild.spec.load import load_project, load_service

    project = load_project(ROOT)
    for directory in sorted((ROOT / "services").glob("*/patches")):
        service = load_service(ROOT, directory.parent.name, project)
        listed = {entry.src for entry in service.files}
        for patch in sorted(directory.glob("*.patch")):
            assert f"patches/{patch.name}" in listed, f"{patch} is not in {service.name}'s files"
