"""Secret files: created private and never overwritten; every unusable one is one clear line."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from ipabuild.cli import main
from ipabuild.core.errors import ConfigError, UsageError
from ipabuild.stack.secrets import MAX_SECRET_BYTES, ensure_secrets, secrets_dir

NAMES = ["admin-password", "kdc-master-key"]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    """A stack's secrets directory holding two good secrets."""
    path = tmp_path / ".ipabuild" / "secrets" / "ipa"
    ensure_secrets(path, NAMES)
    return path


def _refused(directory: Path, words: str, fix: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        ensure_secrets(directory, NAMES)
    message = caught.value.user_message()
    assert "\n" not in message and caught.value.exit_status == 2
    assert words in message and f"(fix: {fix}" in message, message
    return caught.value


def test_missing_directory_is_created_private(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "secrets"
    files = ensure_secrets(path, NAMES)
    assert files.created == NAMES and _mode(path) == 0o700
    assert all(_mode(files.path(n)) == 0o600 and files.path(n).read_text() for n in NAMES)
    values = {n: files.path(n).read_bytes() for n in NAMES}
    again = ensure_secrets(path, NAMES)
    assert again.created == [] and {n: again.path(n).read_bytes() for n in NAMES} == values


def test_directory_that_is_a_file(tmp_path: Path) -> None:
    path = tmp_path / "secrets"
    path.write_text("not a directory")
    error = _refused(path, "is not a directory", "move it away")
    assert error.path == path


def test_directory_that_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    error = _refused(tmp_path / "file" / "secrets", "cannot be created", "check its parent")
    assert error.path == tmp_path / "file" / "secrets"


def test_empty_file(directory: Path) -> None:
    (directory / "kdc-master-key").write_bytes(b"")
    error = _refused(directory, "is empty", "write the secret into it")
    assert error.path == directory / "kdc-master-key"


def test_whitespace_only_file_is_empty(directory: Path) -> None:
    (directory / "admin-password").write_bytes(b" \n\t\n")
    _refused(directory, "admin-password: is empty", "write the secret")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o666, 0o700 | 0o070])
def test_group_or_other_access_is_refused(directory: Path, mode: int) -> None:
    path = directory / "admin-password"
    path.chmod(mode)
    error = _refused(directory, f"open to group or others (mode {mode:04o})",
                     f"chmod 600 {path}")
    assert error.path == path


def test_owner_only_modes_are_accepted(directory: Path) -> None:
    (directory / "admin-password").chmod(0o400)
    assert ensure_secrets(directory, NAMES).created == []


def test_unreadable_file(directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = directory / "kdc-master-key"
    if os.geteuid() != 0:
        path.chmod(0o000)
    else:  # root reads a mode-0000 file: make the open fail as it would for a user
        real_open = os.open

        def deny(name: str | os.PathLike[str], flags: int, *args: int) -> int:
            if Path(name) == path:
                raise PermissionError(13, "Permission denied", str(name))
            return real_open(name, flags, *args)

        monkeypatch.setattr(os, "open", deny)
    error = _refused(directory, "cannot be read (permission denied)", "chown")
    assert error.path == path


def test_symlink_out_of_the_tree(directory: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.write_text("value")
    outside.chmod(0o600)
    path = directory / "admin-password"
    path.unlink()
    path.symlink_to(outside)
    error = _refused(directory, f"is a symlink to {outside}, outside {directory}",
                     "replace it with a regular file")
    assert error.path == path


def test_relative_symlink_escaping_the_tree(directory: Path) -> None:
    path = directory / "admin-password"
    path.unlink()
    path.symlink_to("../../../../../../../../etc/hostname")
    _refused(directory, "outside", "replace it")


def test_symlink_inside_the_tree_is_followed(directory: Path) -> None:
    (directory / "kept").write_text("value")
    (directory / "kept").chmod(0o600)
    path = directory / "admin-password"
    path.unlink()
    path.symlink_to("kept")
    assert ensure_secrets(directory, NAMES).created == []


def test_dangling_symlink(directory: Path) -> None:
    path = directory / "admin-password"
    path.unlink()
    path.symlink_to("gone")
    _refused(directory, "does not exist", "replace it")
    assert path.is_symlink()  # never replaced behind the user's back


def test_symlink_loop(directory: Path) -> None:
    path = directory / "admin-password"
    path.unlink()
    path.symlink_to("admin-password")
    _refused(directory, "symlink loop", "replace it")


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_not_a_regular_file(directory: Path, kind: str) -> None:
    path = directory / "admin-password"
    path.unlink()
    if kind == "directory":
        path.mkdir(mode=0o700)
    else:
        os.mkfifo(path, 0o600)
    _refused(directory, "is not a regular file", "replace it")  # and a FIFO never blocks


def test_oversized_file(directory: Path) -> None:
    (directory / "admin-password").write_bytes(b"x" * (MAX_SECRET_BYTES + 1))
    _refused(directory, "larger than 64 KiB", "a secret is a password")


@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden", "", "x\x00y"])
def test_secret_names_stay_in_the_directory(tmp_path: Path, name: str) -> None:
    with pytest.raises(UsageError, match="not a plain file name"):
        ensure_secrets(tmp_path / "secrets", [name])
    assert not (tmp_path / "escape").exists()


@pytest.mark.parametrize("stack", ["../other", "a/b", "", "-x"])
def test_stack_names_stay_under_ipabuild(tmp_path: Path, stack: str) -> None:
    with pytest.raises(UsageError, match="not a plain name"):
        secrets_dir(tmp_path, stack)


def test_cli_reports_a_bad_secret_in_one_line(project_copy: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run = ["--root", str(project_copy), "secrets", "--out", str(out)]
    first = CliRunner().invoke(main, run)
    assert first.exit_code == 0 and "created" in first.output
    (out / "admin-password").chmod(0o644)
    result = CliRunner().invoke(main, run)
    assert result.exit_code == 2 and not isinstance(result.exception, KeyError)
    lines = result.stderr.strip().splitlines()
    assert lines == [f"ipabuild: error: {out / 'admin-password'}: is open to group or others "
                     f"(mode 0644) (fix: chmod 600 {out / 'admin-password'}, and change the "
                     "secret if others read it)"]


def test_cli_refuses_a_stack_name_with_a_path(project_copy: Path) -> None:
    result = CliRunner().invoke(main, ["--root", str(project_copy), "secrets", "--name", "../x"])
    assert result.exit_code == 2
    assert result.stderr.startswith("ipabuild: error: stack name '../x' is not a plain name")
