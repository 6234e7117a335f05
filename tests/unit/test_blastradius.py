"""Blast radius matrix and summary from fake measurements; the probe script's tries run
for real on the host (as an unprivileged UID via setpriv) against files in a temporary
directory standing in for a container, so a changed fact changes the matrix."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console

from ipabuild.core.commands import CommandResult
from ipabuild.core.procfacts import IdRange, ProcessFacts
from ipabuild.core.tables import print_table
from ipabuild.proof import blastprobe
from ipabuild.proof.blastprobe import (
    PROBE_SCRIPT,
    columns_for,
    daemons_of,
    discover,
    measure,
    probe,
)
from ipabuild.proof.blastradius import (
    CONNECT,
    KEY,
    NONE,
    PEER,
    READ,
    READ_WRITE,
    SECRET,
    SOCKET,
    VOLUME,
    Column,
    Daemon,
    Matrix,
    Row,
    matrix_notes,
    matrix_table,
    reach_table,
    summary,
)
from ipabuild.proof.targets import ContainerFacts
from ipabuild.spec.model import Service

NO_PID = 2**22 + 1  # above pid_max: no /proc entry, nothing measured from it
IDENTITY = [IdRange(0, 0, 2**32 - 1)]


def _daemon(service: str, uid: int, *commands: str, mode: str = "split",
            ports: list[int] | None = None) -> Daemon:
    return Daemon(mode, service, f"ipabuild-t-{service}", uid, 0, list(commands or ["d"]),
                  ports=ports or [])


def _columns() -> list[Column]:
    return [Column(SECRET, "secret:dm", "ldap-dm-password"),
            Column(SECRET, "secret:seed", "http-tls-key-seed"),
            Column(SECRET, "secret:master", "kdc-master-key"),
            Column(KEY, "key:tls", "http:/tmp/tls.key", owner="http"),
            Column(PEER, "peer:ldap:3389", "ldap:3389", owner="ldap", port=3389),
            Column(SOCKET, "socket:ldapi", "ldap:/run/ldapi/slapd.socket", owner="ldap")]


def _split() -> Matrix:
    http = Row(_daemon("http", 10080, "apache2"),
               {"secret:seed": READ, "key:tls": READ_WRITE, "peer:ldap:3389": CONNECT})
    ldap = Row(_daemon("ldap", 10389, "ns-slapd", ports=[3389]),
               {"secret:dm": READ, "peer:ldap:3389": CONNECT, "socket:ldapi": CONNECT})
    return Matrix("split", _columns(), [http, ldap])


def test_summary_counts_per_daemon() -> None:
    line = summary(_split())
    assert line.startswith("split: http apache2 → 1 of 3 secrets, 1 of 1 key, 1 writable")
    assert "ldap ns-slapd → 1 of 3 secrets, 0 of 1 key, LDAPI 1 of 1" in line
    # ldap's own port is not a peer of ldap; http reaches it
    assert "http apache2 → 1 of 3 secrets, 1 of 1 key, 1 writable, LDAPI 0 of 1, " \
           "1 of 1 peer ports" in line
    assert "peer ports" not in line.split("ldap ns-slapd")[1]


def test_one_more_readable_secret_changes_matrix_and_summary() -> None:
    matrix = _split()
    before = summary(matrix)
    matrix.rows[0].cells["secret:dm"] = READ
    after = summary(matrix)
    assert before != after
    assert "http apache2 → 2 of 3 secrets" in after
    assert matrix.to_json()["rows"][0]["cells"]["secret:dm"] == READ  # type: ignore[index]


def test_every_daemon_reaching_everything_reads_as_any_daemon() -> None:
    columns = [c for c in _columns() if c.kind in (SECRET, KEY)]
    everything = {c.id: READ for c in columns}
    rows = [Row(_daemon("monolithic", uid, cmd, mode="monolithic"), dict(everything))
            for uid, cmd in ((0, "krb5kdc"), (389, "ns-slapd"))]
    matrix = Matrix("monolithic", columns, rows)
    assert summary(matrix) == "monolithic: any daemon → all 3 secrets, 1 of 1 key"
    rows[1].cells["secret:master"] = NONE  # one fact differs: the rows are named again
    assert summary(matrix).startswith("monolithic: monolithic krb5kdc → all 3 secrets")
    assert "monolithic ns-slapd → 2 of 3 secrets" in summary(matrix)


def test_not_measured_mode() -> None:
    assert summary(Matrix("monolithic", [], [])).endswith("not measured (nothing running "
                                                          "in this mode)")


def _text(table: object, notes: list[str] | None = None) -> str:
    out = StringIO()
    print_table(table, Console(file=out, width=60, force_terminal=False),  # type: ignore[arg-type]
                notes=notes or [])
    return out.getvalue()


def test_tables_print_whole_values_off_a_terminal() -> None:
    text = _text(matrix_table(_split()), matrix_notes(_split()))
    assert "http apache2 (uid 10080)" in text and "ldap-dm-password" in text
    assert "read+write" in text and "…" not in text
    reach = _text(reach_table(_split()))
    assert "ldap:3389" in reach and "ldap:/run/ldapi/slapd.socket" in reach


# ---- the real tries, on the host, as an unprivileged UID -----------------------------

UID, GID = 65534, 65534


def _setpriv_runner(daemon: Daemon, args: list[str]) -> CommandResult:
    """The probe script as ``podman exec --user`` would run it, minus the container."""
    argv = ["setpriv", f"--reuid={daemon.uid}", f"--regid={daemon.gid}", "--clear-groups",
            "sh", "-c",
            PROBE_SCRIPT, "sh", *args]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    return CommandResult(argv, proc.returncode, proc.stdout, proc.stderr)


needs_root = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                                reason="the real tries switch UID with setpriv (root)")


@pytest.fixture
def box() -> Iterator[Path]:
    """A directory the unprivileged UID can traverse (pytest's tmp_path is under a 0700
    directory of root's)."""
    path = Path(tempfile.mkdtemp(prefix="ipabuild-blast-test-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def fake_container(box: Path, monkeypatch: pytest.MonkeyPatch) -> ContainerFacts:
    """A "container" whose volume and tmpfs are directories on the host (our own /proc
    root is /), with a readable seed, a private secret, a key and an LDAPI socket."""
    tmp_path = box
    volume, tmpfs = tmp_path / "data", tmp_path / "tmp"
    for d in (volume, tmpfs):
        d.mkdir()
        d.chmod(0o755)
    tmp_path.chmod(0o755)
    (tmpfs / "secrets").mkdir(mode=0o755)
    (tmpfs / "secrets" / "seed").write_text("s")
    (tmpfs / "secrets" / "seed").chmod(0o444)
    (tmpfs / "secrets" / "dm").write_text("d")
    (tmpfs / "secrets" / "dm").chmod(0o400)
    (volume / "alias").mkdir()
    (volume / "alias" / "key4.db").write_bytes(b"SQLite")
    (volume / "alias" / "key4.db").chmod(0o600)
    (tmpfs / "tls.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    (tmpfs / "tls.pem").chmod(0o644)
    (tmpfs / "notes.txt").write_text("nothing")
    ldapi = socket.socket(socket.AF_UNIX)
    ldapi.bind(str(volume / "slapd-TEST.socket"))
    ldapi.listen(1)
    monkeypatch.setattr(blastprobe, "tmpfs_mounts", lambda _pid: [str(tmpfs)])
    facts = ContainerFacts("ipabuild-t-web", "t", "web", "split", "img", os.getpid(),
                           [ProcessFacts(NO_PID, "webd", [UID] * 4, [GID] * 4, [UID] * 4,
                                         [GID] * 4, IDENTITY, IDENTITY)],
                           volumes={"ipabuild-t-web-data": str(volume)})
    facts.processes[0].pid = NO_PID
    return facts


def _spec(tmp_path: Path) -> Service:
    return Service.model_validate({
        "name": "web", "description": "fake", "user": UID, "entrypoint": ["/bin/true"],
        "families": {"debian": {"base": "trixie", "packages": []}},
        "secrets": [{"name": "seed", "path": str(tmp_path / "tmp/secrets/seed")},
                    {"name": "dm", "path": str(tmp_path / "tmp/secrets/dm")}],
        "ports": [{"name": "x", "port": 65531, "service_port": 65531}]})


def test_discovery_finds_keys_by_name_and_content_and_ldapi_sockets(
        fake_container: ContainerFacts, box: Path) -> None:
    tmp_path = box
    keys, sockets = discover(os.getpid(), [str(tmp_path / "data"), str(tmp_path / "tmp")],
                             skip={str(tmp_path / "tmp/secrets/dm")})
    assert sorted(keys) == [str(tmp_path / "data/alias/key4.db"), str(tmp_path / "tmp/tls.pem")]
    assert sockets == [str(tmp_path / "data/slapd-TEST.socket")]


@needs_root
def test_measured_matrix_changes_with_one_fact(fake_container: ContainerFacts,
                                               box: Path) -> None:
    tmp_path = box
    spec = _spec(tmp_path)
    [matrix] = measure([fake_container], {"web": spec}, ["split"], _setpriv_runner)
    cells = {c.label: matrix.rows[0].cell(c) for c in matrix.columns}
    assert cells["seed"] == READ and cells["dm"] == NONE
    assert matrix.rows[0].details["secret:dm"] == "denied"
    assert cells[f"web:{tmp_path}/tmp/tls.pem"] == READ
    assert cells[f"web:{tmp_path}/data/alias/key4.db"] == NONE
    assert cells[f"web:{tmp_path}/data"] == READ  # 0755: listed, not writable
    assert cells[f"web:{tmp_path}/data/slapd-TEST.socket"] == NONE  # root's 0755 socket
    assert cells["web:65531"] == NONE
    assert matrix.rows[0].probe_ids.startswith(f"{UID}:{GID}")
    assert matrix.rows[0].same_credentials and not matrix.rows[0].error
    # What a bind over the LDAPI socket reads of the directory: here nothing (this UID
    # cannot even connect to root's socket), but counted among the secrets and keys.
    assert cells["web:directory/userPassword over LDAPI (password hashes)"] == NONE
    assert cells["web:directory/krbPrincipalKey over LDAPI (Kerberos keys)"] == NONE
    before = summary(matrix)
    assert before == "split: web webd → 1 of 3 secrets, 1 of 3 keys, LDAPI 0 of 1, " \
                     "0 of 1 peer ports"

    (tmp_path / "tmp/secrets/dm").chmod(0o444)   # one more secret readable
    (tmp_path / "data").chmod(0o777)             # and the volume writable
    [matrix] = measure([fake_container], {"web": spec}, ["split"], _setpriv_runner)
    cells = {c.label: matrix.rows[0].cell(c) for c in matrix.columns}
    assert cells["dm"] == READ and cells[f"web:{tmp_path}/data"] == READ_WRITE
    assert summary(matrix) != before and "2 of 3 secrets" in summary(matrix)
    assert not list((tmp_path / "data").glob(".ipabuild-blast.*"))  # the try cleaned up


def test_daemons_group_processes_by_uid_and_gid() -> None:
    def process(pid: int, uid: int, gid: int, command: str) -> ProcessFacts:
        return ProcessFacts(pid, command, [uid] * 4, [gid] * 4, [uid] * 4, [gid] * 4,
                            IDENTITY, IDENTITY, groups_host=[gid, 7])

    facts = ContainerFacts("ipabuild-t-mono", "t", "mono", "monolithic", "img", NO_PID,
                           [process(NO_PID, 0, 0, "catatonit"),
                            process(NO_PID + 1, 0, 0, "krb5kdc"),
                            process(NO_PID + 2, 389, 389, "ns-slapd"),
                            process(NO_PID + 3, 389, 389, "ns-slapd")])
    daemons = daemons_of(facts)
    assert [(d.uid, d.gid, d.commands) for d in daemons] == [
        (0, 0, ["krb5kdc"]), (389, 389, ["ns-slapd"])]
    assert daemons[1].groups == [7] and daemons[1].label == "mono ns-slapd (uid 389)"


def test_a_probe_that_answers_nothing_is_an_error_not_a_none() -> None:
    columns = [Column(SECRET, "secret:a", "a", {"ipabuild-t-x": "/run/secrets/a"}),
               Column(VOLUME, "volume:v", "x:/v", {"other": "/v"})]
    row = probe(_daemon("x", 1), [*columns],
                lambda *_: CommandResult([], 126, "", "exec failed"))
    assert row.error.startswith("1 of 1 tries gave no answer (exit 126)")
    assert row.cells == {"secret:a": NONE, "volume:v": NONE}


def test_columns_for_spec_secrets_reach_every_container(
        fake_container: ContainerFacts, box: Path) -> None:
    tmp_path = box
    columns = columns_for([fake_container], {"web": _spec(tmp_path)})
    kinds = [c.kind for c in columns]
    assert kinds == sorted(kinds, key=[SECRET, KEY, VOLUME, PEER, SOCKET].index)
    secret = next(c for c in columns if c.label == "dm")
    assert secret.locations == {"ipabuild-t-web": str(tmp_path / "tmp/secrets/dm")}


def test_each_stack_of_a_mode_gets_its_own_matrix(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two split stacks on one host: a daemon's peers and secrets are its own stack's,
    and the summary names the stack."""
    monkeypatch.setattr(blastprobe, "tmpfs_mounts", lambda _pid: [])
    answer = "id\t5:0 0\ncaps\t0\nresult\t0\tread\t\n"

    def container(stack: str) -> ContainerFacts:
        return ContainerFacts(f"ipabuild-{stack}-web", stack, "web", "split", "img", NO_PID,
                              [ProcessFacts(NO_PID, "webd", [5] * 4, [0] * 4, [5] * 4,
                                            [0] * 4, IDENTITY, IDENTITY)])

    spec = Service.model_validate({
        "name": "web", "description": "fake", "user": 5, "entrypoint": ["/bin/true"],
        "families": {"debian": {"base": "trixie", "packages": []}},
        "secrets": [{"name": "seed", "path": "/run/secrets/seed"}],
        "ports": [{"name": "x", "port": 8080, "service_port": 80}]})
    matrices = measure([container("a"), container("b")], {"web": spec}, ["split", "monolithic"],
                       lambda *_: CommandResult([], 0, answer, ""))
    assert [m.name for m in matrices] == ["split (stack a)", "split (stack b)", "monolithic"]
    assert [len(m.of_kind(PEER)) for m in matrices] == [1, 1, 0]
    assert summary(matrices[0]) == "split (stack a): web webd → 1 of 1 secret, no keys, " \
                                   "0 of 1 peer ports"
    assert summary(matrices[2]).startswith("monolithic: not measured")


def test_what_a_bind_reads_of_the_directory_counts_as_secrets_and_keys(
        fake_container: ContainerFacts, box: Path) -> None:
    """A daemon whose LDAPI bind reads password hashes and Kerberos keys (FreeIPA's KDC
    as Directory Manager) gets those as its own rows, in its summary's counts."""
    tried: list[str] = []

    def runner(_daemon: Daemon, args: list[str]) -> CommandResult:
        pairs = list(zip(args[::2], args[1::2], strict=True))
        tried.extend(kind for kind, _ in pairs)
        answers = [f"result\t{i}\t{'read' if kind == 'ldapread' else 'none'}\t"
                   f"{'412 values' if kind == 'ldapread' else ''}"
                   for i, (kind, _) in enumerate(pairs)]
        return CommandResult([], 0, "id\t1:0 0\ncaps\t0\n" + "\n".join(answers) + "\n", "")

    [matrix] = measure([fake_container], {"web": _spec(box)}, ["split"], runner)
    assert tried.count("ldapread") == 2
    directory = [c for c in matrix.columns if c.probe == "ldapread"]
    assert sorted((c.kind, c.locations["ipabuild-t-web"].rsplit("|", 1)[1])
                  for c in directory) == [(KEY, "krbPrincipalKey"), (SECRET, "userPassword")]
    assert all(matrix.rows[0].details[c.id] == "412 values" for c in directory)
    assert summary(matrix) == "split: web webd → 1 of 3 secrets, 1 of 3 keys, LDAPI 0 of 1, " \
                              "0 of 1 peer ports"
