"""Posture rows from fake /proc facts: host GIDs stand beside host UIDs everywhere."""

from __future__ import annotations

from io import StringIO

import pytest
from rich.console import Console

from ipabuild.core.procfacts import IdRange, ProcessFacts
from ipabuild.core.tables import print_table
from ipabuild.proof import posture
from ipabuild.proof.posture import ContainerPosture, ImageFacts
from ipabuild.proof.targets import ContainerFacts
from ipabuild.spec.model import AbsentDaemon

HOST_BASE = 2382000000
NO_PID = 2**22 + 1  # above pid_max: listening_ports finds no /proc entry, measures nothing


def _process(pid: int, uid: int, gid: int, *, userns: bool) -> ProcessFacts:
    """A daemon as /proc shows it: in its own user namespace everything is shifted."""
    shift = HOST_BASE if userns else 0
    ranges = [IdRange(0, HOST_BASE, 65536)] if userns else [IdRange(0, 0, 2**32 - 1)]
    return ProcessFacts(pid, "daemon", [uid + shift] * 4, [gid + shift] * 4, [uid] * 4,
                        [gid] * 4, uid_map=ranges, gid_map=ranges, own_user_namespace=userns)


def _row(mode: str, service: str, processes: list[ProcessFacts]) -> ContainerPosture:
    facts = ContainerFacts(f"ipabuild-a-long-tenant-stack-name-{service}", "tenant", service,
                           mode, "localhost/ipabuild/x:latest", NO_PID, processes)
    return posture.container_posture(facts, {facts.image: ImageFacts(facts.image)})


@pytest.fixture
def rows(monkeypatch: pytest.MonkeyPatch) -> list[ContainerPosture]:
    monkeypatch.setattr(posture, "inspect_image", lambda _name: None)  # no podman
    split = _row("split", "ldap", [_process(10, HOST_BASE + 389, 0, userns=False),
                                   _process(11, HOST_BASE + 389, 0, userns=False)])
    mono = _row("monolithic", "monolithic", [_process(20, 0, 0, userns=True),
                                             _process(21, 389, 389, userns=True)])
    return [split, mono]


def test_split_without_userns_shows_host_root_group(rows: list[ContainerPosture]) -> None:
    split, mono = rows
    assert split.host_gid_range == [0, 0] and split.gids_in_container == [0]
    assert split.host_root_group_processes == 2 and split.host_root_processes == 0
    assert mono.host_gid_range == [HOST_BASE, HOST_BASE + 389]
    assert mono.gids_in_container == [0, 389] and mono.host_root_group_processes == 0


def test_json_and_summary_carry_the_gids(rows: list[ContainerPosture]) -> None:
    document = posture.report_json(rows, ["monolithic", "split"], {})
    first = document["containers"][0]  # type: ignore[index]
    assert first["host_gid_range"] == [0, 0] and first["host_root_group_processes"] == 2
    assert first["host_uid_range"] == [HOST_BASE + 389] * 2
    assert any("2 in the host's root group (GID 0)" in line
               for line in document["summary"])  # type: ignore[attr-defined]


def test_html_has_a_gid_column_beside_the_uid_column(rows: list[ContainerPosture]) -> None:
    page = posture.report_html(posture.report_json(rows, ["monolithic", "split"], {}))
    assert "<th>host UID range</th>\n<th>GIDs inside</th><th>host GID range</th>" in page
    dash = "\N{EN DASH}"  # the template's range separator
    assert f'<td class="bad">0{dash}0</td>' in page  # the split row: the host's root group
    assert f'<td class="good">{HOST_BASE}{dash}{HOST_BASE + 389}</td>' in page


def test_text_table_shows_host_gids_in_full(rows: list[ContainerPosture]) -> None:
    out = StringIO()
    print_table(posture.posture_table(rows), Console(file=out, width=80))
    text = out.getvalue()
    header = next(line for line in text.splitlines() if "host UIDs" in line)
    assert header.index("host UIDs") < header.index("host GIDs")
    split_line = next(line for line in text.splitlines() if "-ldap" in line)
    assert f"│ {HOST_BASE + 389} " in split_line and "│ 0 " in split_line
    assert f"{HOST_BASE}-{HOST_BASE + 389}" in text and "…" not in text


def test_summary_says_whether_a_mode_ever_runs_as_uid_0_in_any_namespace(
        rows: list[ContainerPosture]) -> None:
    """Split: nothing running as UID 0 and no root init step declared; the monolith: its
    UID-0 process in its user namespace. A declared root init step of a split service
    (gone by the time anything is measured) still counts."""
    summary = posture.summarise(rows, ["monolithic", "split"])
    assert ("split: no process runs as UID 0 in any user namespace, at any time "
            "(measured: none running; declared: no init step of its services runs as root)"
            in summary)
    assert any(line.startswith("monolithic: runs as UID 0 inside a user namespace: "
                               "1 running process(es)") for line in summary)
    with_step = posture.summarise(rows, ["split"], {"ldap": "chowns its volume",
                                                    "other": "not in this mode"})
    line = next(entry for entry in with_step if "UID 0" in entry)
    assert line.startswith("split: runs as UID 0 inside a user namespace: ldap's init step "
                           "(chowns its volume)"), line
    assert "other" not in line


def test_summary_names_root_daemons_and_what_upstream_runs_that_is_absent(
        rows: list[ContainerPosture]) -> None:
    """The monolith's root processes by command, beside split's none, and each daemon the
    monolith's spec says upstream runs as root but it leaves out, with the reason."""
    absent = {"monolithic": [AbsentDaemon(daemon="gssproxy", why="workers read the keytab")]}
    summary = posture.summarise(rows, ["monolithic", "split"], None, absent)
    assert "monolithic: root daemons (measured, by command): daemon" in summary
    assert not any(line.startswith("split: root daemons") for line in summary)
    assert ("monolithic: root upstream, absent here: gssproxy (upstream as root): "
            "workers read the keytab") in summary
