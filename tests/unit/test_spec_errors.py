"""Every malformed spec gives one line naming file, line and fix; exit status 2; no traceback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from ipabuild.build.render import render_service
from ipabuild.cli import main
from ipabuild.core.errors import ConfigError, UsageError
from ipabuild.spec.load import load_project, load_service, load_services


def run_cli(root: Path, *args: str):
    return CliRunner().invoke(main, ["--root", str(root), *args])


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def line_of(path: Path, needle: str) -> int:
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(needle)


def assert_one_line_error(result, path: Path, line: int | None, words: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    message = result.output.strip()
    assert len(message.splitlines()) == 1, message
    where = f"{path}:{line}" if line else str(path)
    assert where in message, message
    assert re.search(words, message), message
    assert "fix:" in message


def test_bad_yaml_names_file_and_line(project_copy: Path) -> None:
    spec = project_copy / "services/kdc/service.yaml"
    edit(spec, "user: 10088", "user: [10088")
    result = run_cli(project_copy, "images", "--render-only", str(project_copy / "out"))
    assert_one_line_error(result, spec, None, "invalid YAML")
    assert re.search(r"service\.yaml:\d+:", result.output)


def test_unknown_key_in_service(project_copy: Path) -> None:
    spec = project_copy / "services/ldap/service.yaml"
    edit(spec, "user: 10389", "user: 10389\nusr: 5")
    result = run_cli(project_copy, "images", "--render-only", str(project_copy / "out"))
    assert_one_line_error(result, spec, line_of(spec, "usr: 5"), "unknown key `usr`")


def test_wrong_type_in_project(project_copy: Path) -> None:
    config = project_copy / "ipabuild.yaml"
    edit(config, "  tag: latest", "  tag: [latest]")
    result = run_cli(project_copy, "images", "--render-only", str(project_copy / "out"))
    assert_one_line_error(result, config, line_of(config, "tag: [latest]"), "image.tag")


def test_root_user_is_rejected(project_copy: Path) -> None:
    spec = project_copy / "services/http/service.yaml"
    edit(spec, "user: 10080", "user: 0")
    result = run_cli(project_copy, "images", "--render-only", str(project_copy / "out"))
    assert_one_line_error(result, spec, line_of(spec, "user: 0"), "greater than 0")


def test_missing_template_file(project_copy: Path) -> None:
    spec = project_copy / "services/kdc/service.yaml"
    (project_copy / "services/kdc/kadm5.acl.j2").unlink()
    result = run_cli(project_copy, "images", "--render-only", str(project_copy / "out"))
    assert_one_line_error(result, spec, line_of(spec, "kadm5.acl.j2"), "does not exist")


def test_undefined_template_variable(project_copy: Path) -> None:
    template = project_copy / "services/kdc/kadm5.acl.j2"
    template.write_text("# acl\nadmin@{{ realm }}\t*\n{{ reaml }}\n")
    result = run_cli(project_copy, "images", "--render-only", str(project_copy / "out"))
    assert_one_line_error(result, template, 3, "undefined template variable.*reaml")


def test_template_syntax_error(project_copy: Path) -> None:
    template = project_copy / "services/kdc/kadm5.acl.j2"
    template.write_text("admin@{{ realm }\n")
    result = run_cli(project_copy, "images", "--render-only", str(project_copy / "out"))
    assert_one_line_error(result, template, 1, "template syntax error")


def test_unknown_service(project_copy: Path) -> None:
    result = run_cli(project_copy, "images", "--service", "ldap,nosuch", "--render-only", "x")
    assert result.exit_code == 2
    assert "unknown service nosuch" in result.output and "choose from:" in result.output
    assert "Traceback" not in result.output


def test_unknown_family_option(project_copy: Path) -> None:
    result = run_cli(project_copy, "images", "--family", "arch", "--render-only", "x")
    assert result.exit_code == 2
    assert "unknown family 'arch'" in result.output and "Traceback" not in result.output


def test_unknown_family_in_service(project_copy: Path) -> None:
    spec = project_copy / "services/ldap/service.yaml"
    edit(spec, "  fedora:\n", "  gentoo:\n")
    with pytest.raises(ConfigError) as caught:
        load_service(project_copy, "ldap", load_project(project_copy))
    assert caught.value.line == line_of(spec, "gentoo:")
    assert "unknown family 'gentoo'" in caught.value.user_message()


def test_unknown_base(project_copy: Path) -> None:
    spec = project_copy / "services/kdc/service.yaml"
    edit(spec, "base: trixie", "base: sid")
    with pytest.raises(ConfigError) as caught:
        load_service(project_copy, "kdc", load_project(project_copy))
    assert caught.value.line == line_of(spec, "base: sid")
    assert "no base 'sid'" in str(caught.value)


def test_missing_project_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--root", str(tmp_path), "images"])
    assert result.exit_code == 2
    assert "ipabuild.yaml" in result.output and "file not found" in result.output


def test_default_family_must_exist(project_copy: Path) -> None:
    config = project_copy / "ipabuild.yaml"
    edit(config, "default_family: debian", "default_family: suse")
    with pytest.raises(ConfigError) as caught:
        load_project(project_copy)
    assert caught.value.line == line_of(config, "default_family: suse")


def test_service_without_family_entry(project_copy: Path) -> None:
    project = load_project(project_copy)
    service = load_services(project_copy, project, ["ldap"])[0]
    with pytest.raises(UsageError):
        render_service(project_copy, project, service, "nosuch", "base:1")


@pytest.mark.parametrize("src", ["/etc/shadow", "../ldap/entrypoint.sh", "x/../../y"])
def test_file_src_outside_services_is_refused(project_copy: Path, src: str) -> None:
    """A `src` that leaves services/ would copy any host file into the build context."""
    spec = project_copy / "services/kdc/service.yaml"
    edit(spec, "{src: kdc.conf.j2,", f"{{src: '{src}',")
    result = run_cli(project_copy, "images", "--render-only", str(project_copy / "out"))
    assert_one_line_error(result, spec, line_of(spec, src), "relative path inside services")
