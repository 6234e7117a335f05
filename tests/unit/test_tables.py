"""Tables a reviewer pastes: full values off a terminal, fitted (never cut) on one."""

from __future__ import annotations

from io import StringIO

import pytest
from rich.console import Console
from rich.table import Table

from ipabuild.build.results import ImageResult
from ipabuild.build.summary import summary_table
from ipabuild.core.procfacts import IdRange, ProcessFacts
from ipabuild.core.tables import new_table, print_table
from ipabuild.doctor import Check, render_report
from ipabuild.proof.probe import probe_table
from ipabuild.stack.stack import StackStatus
from ipabuild.stack.view import status_table

HOST_UID = 2382000389  # 10 digits, what rich cut to "2382…" in a pipe
CONTAINER = "ipabuild-a-rather-long-tenant-stack-name-0123456789-ldap"
IMAGE = "registry.example.org:5000/some/deep/path/ipabuild/ldap:2024.06.01-rc1"
PORTS = {"389/tcp": "127.0.0.1:40001", "636/tcp": "127.0.0.1:40002",
         "8443/tcp": "127.0.0.1:40003"}


def _status_rows() -> list[StackStatus]:
    return [StackStatus("ldap", CONTAINER, "running", "healthy", PORTS, 1234567, 389, HOST_UID),
            StackStatus("kdc", CONTAINER.replace("ldap", "kdc"), "absent", "-")]


def _processes() -> list[ProcessFacts]:
    return [ProcessFacts(1234567, "ns-slapd", [HOST_UID] * 4, [0] * 4, [389] * 4, [0] * 4,
                         uid_map=[IdRange(0, 2382000000, 65536)], no_new_privs=True,
                         seccomp="filter"),
            ProcessFacts(42, "java", [HOST_UID + 1] * 4, [HOST_UID + 1] * 4, [None] * 4,
                         [None] * 4, own_user_namespace=True,
                         capabilities_effective=["chown", "dac_override", "setuid"])]


def _tables() -> dict[str, Table]:
    """Fresh tables each call (printing adapts a table's columns to its console)."""
    return {
        "status": status_table(_status_rows()),
        "probe": probe_table(f"container {CONTAINER}", _processes()),
        "doctor": render_report([Check("podman secret records", False,
                                       "records without data: " + ", ".join(
                                           f"secret-{n}" for n in range(12)),
                                       "ipabuild doctor --fix (drops the dead records) "
                                       "or pip install -e '.[test]'")]),
        "images": summary_table([ImageResult("ldap", IMAGE, "built", "0123456789abcdef",
                                             123_000_000, 12.5)] * 3),
    }


def _print(table: Table, *, terminal: bool, width: int = 80) -> str:
    out = StringIO()
    print_table(table, Console(file=out, force_terminal=terminal, width=width,
                               color_system=None))
    return out.getvalue()


@pytest.mark.parametrize("name", ["status", "probe", "doctor", "images"])
def test_off_a_terminal_every_value_is_whole(name: str) -> None:
    text = _print(_tables()[name], terminal=False)
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) > 80  # not squeezed into 80
    assert all(line == line.rstrip() for line in text.splitlines())  # pastes without blanks
    expected = {
        "status": [str(HOST_UID), CONTAINER, *(f"{k}->{v}" for k, v in PORTS.items())],
        "probe": [" ".join([str(HOST_UID)] * 4), "0->2382000000 (65536)", CONTAINER,
                  "chown, dac_override, setuid"],
        "doctor": ["secret-11", "pip install -e '.[test]'"],  # data, not rich markup
        "images": [IMAGE, "0123456789ab", "123 MB"],
    }[name]
    for value in expected:
        assert value in text


def _columns(text: str) -> list[str]:
    """Each column's body text joined across lines, spaces dropped (wrapping adds none)."""
    body = text.split("┡", 1)[1].split("└", 1)[0].splitlines()[1:]
    cells = [[cell.strip() for cell in line.split("│")[1:-1]] for line in body]
    return ["".join(row[i] for row in cells).replace(" ", "") for i in range(len(cells[0]))]


@pytest.mark.parametrize("name", ["status", "probe", "doctor", "images"])
def test_on_a_terminal_the_table_fits_and_wraps(name: str) -> None:
    text = _print(_tables()[name], terminal=True, width=80)
    assert "…" not in text
    assert all(len(line) <= 80 for line in text.splitlines())
    columns = _columns(text)
    for value in {"status": [CONTAINER, "".join(f"{k}->{v}" for k, v in PORTS.items())],
                  "probe": [str(HOST_UID) * 4, "0->2382000000(65536)"],
                  "doctor": ["ipabuilddoctor--fix(dropsthedeadrecords)orpipinstall-e'.[test]'"],
                  "images": [IMAGE],
                  }[name]:
        assert any(value in column for column in columns), value  # wrapped, not cut


def test_on_a_terminal_status_keeps_ids_whole_and_wraps_ports() -> None:
    lines = _print(status_table(_status_rows()), terminal=True, width=120).splitlines()
    assert any(str(HOST_UID) in line for line in lines)
    ports = [line for line in lines if "->127.0.0.1:" in line]
    assert len(ports) == len(PORTS)  # one port a line, each whole


def test_whole_columns_give_way_when_nothing_else_can() -> None:
    """Twelve 10-digit IDs cannot all stay whole in 80 columns: they fold, never cut."""
    uids = [str(HOST_UID + i) for i in range(12)]
    table = new_table("t", [f"c{i}" for i in range(12)], whole=[f"c{i}" for i in range(12)])
    table.add_row(*uids)
    text = _print(table, terminal=True, width=80)
    assert "…" not in text and all(len(line) <= 80 for line in text.splitlines())
    assert _columns(text) == uids


def test_a_table_built_elsewhere_is_not_cut_either() -> None:
    table = Table(title="plain rich")
    table.add_column("uid")
    table.add_row(" ".join(str(HOST_UID + i) for i in range(10)))
    text = _print(table, terminal=False)
    assert "…" not in text and str(HOST_UID + 9) in text


def test_a_title_longer_than_its_table_stays_on_one_line_off_a_terminal() -> None:
    """rich wraps a title at its table's width; pasted, the title stays whole."""
    title = "a title much longer than the narrow table under it, with nothing cut"
    table = new_table(title, ["n"])
    table.add_row("1")
    lines = _print(table, terminal=False).splitlines()
    assert lines[0] == title and lines[1].startswith("┏")
    short = new_table("t", ["a rather wide column header"])
    short.add_row("1")
    first = _print(short, terminal=False).splitlines()[0]
    assert first.strip() == "t" and 10 < len(first) < 20  # centred, nothing after it


def test_notes_follow_the_table_whole_off_a_terminal_and_wrapped_on_one() -> None:
    note = "[1] " + " ".join(f"word{i}" for i in range(40))
    table = new_table("t", ["why"])
    table.add_row("[1]")
    out = StringIO()
    print_table(table, Console(file=out, force_terminal=False, width=40), notes=[note])
    assert out.getvalue().splitlines()[-1] == note
    out = StringIO()
    print_table(table, Console(file=out, force_terminal=True, width=40, color_system=None),
                notes=[note])
    lines = out.getvalue().splitlines()
    assert all(len(line) <= 40 for line in lines) and "word39" in lines[-1]
    assert "".join(lines).replace(" ", "").endswith(note.replace(" ", ""))


def test_status_shows_what_the_health_check_said_beyond_its_status() -> None:
    from ipabuild.stack.view import health_cell

    kdc = StackStatus("kdc", "c", "running", "healthy",
                      health_says="kdc: healthy, PKINIT on, OTP on")
    assert health_cell(kdc) == "healthy\nPKINIT on, OTP on"
    off = StackStatus("kdc", "c", "running", "healthy",
                      health_says="kdc: healthy, PKINIT off: no KDC certificate yet")
    assert health_cell(off).endswith("PKINIT off: no KDC certificate yet")
    # Nothing beyond the status: no second line.
    assert health_cell(StackStatus("ldap", "c", "running", "healthy",
                                   health_says="ldap: healthy")) == "healthy"
    out = _print(status_table([kdc]), terminal=False, width=200)
    assert "PKINIT on, OTP on" in out
