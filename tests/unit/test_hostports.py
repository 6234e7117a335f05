"""Host ports (hostports and the registry's port records), without containers: a port is
picked below the kernel's ephemeral range, never another stack's nor one something has
bound (TCP or UDP), stays the stack's until `down --volumes`, and exhaustion is one
clear error."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from ipabuild.core import locks
from ipabuild.core.errors import UsageError
from ipabuild.stack.hostports import ephemeral_range, pick_port, port_free, port_pool
from ipabuild.stack.idranges import UID_POOL, Interval, Registry, StackIds


@pytest.fixture(autouse=True)
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(locks.STATE_ENV, str(tmp_path / "state"))
    return tmp_path / "state"


def registry(tmp_path: Path, pool: list[Interval], bound: set[int] | None = None) -> Registry:
    files = []
    for kind in ("subuid", "subgid"):
        path = tmp_path / kind
        path.write_text("containers:2147483647:6553600\n")
        files.append(path)
    return Registry(tmp_path / "state", (files[0], files[1]), Interval(UID_POOL.start, 50),
                    ports=(lambda: pool, lambda port: port not in (bound or set())))


def test_the_pool_leaves_out_the_kernels_ephemeral_range(tmp_path: Path) -> None:
    sysctl = tmp_path / "ip_local_port_range"
    sysctl.write_text("32768\t60999\n")
    assert ephemeral_range(sysctl) == Interval(32768, 28232)
    assert port_pool(sysctl) == [Interval(20000, 12768), Interval(61000, 4536)]
    sysctl.write_text("1024 65535\n")  # every port the kernel's: none for ipabuild
    assert port_pool(sysctl) == []
    with pytest.raises(UsageError, match="no free host port left"):
        pick_port(port_pool(sysctl), [])


def test_the_live_pool_holds_no_ephemeral_port() -> None:
    ephemeral = ephemeral_range()
    assert port_pool() and all(not block.overlaps(ephemeral) for block in port_pool())


@pytest.mark.parametrize("kind", [socket.SOCK_STREAM, socket.SOCK_DGRAM])
def test_a_port_bound_for_either_protocol_is_not_free(kind: int) -> None:
    """The CI failure this module exists for: a UDP publish on a port whose UDP side was
    held. A probe of TCP alone (podman's pick) would call it free."""
    with socket.socket(socket.AF_INET, kind) as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        assert not port_free(port)
    assert port_free(port)


def test_a_pick_skips_recorded_and_bound_ports() -> None:
    pool = [Interval(20000, 5), Interval(30000, 5)]
    assert pick_port(pool, [20000, 20001], lambda p: p != 20002) == 20003
    assert pick_port(pool, range(20000, 20005), lambda p: True) == 30000
    with pytest.raises(UsageError, match="no free host port left in 20000-20004"):
        pick_port(pool[:1], [20000, 20001, 20002], lambda p: p < 20003)


def test_stacks_get_disjoint_ports_kept_until_released(tmp_path: Path) -> None:
    reg = registry(tmp_path, [Interval(20000, 10)], bound={20001})
    first = reg.allocate("a", userns=False, services=["kdc"], ports=["kdc:88", "kdc:464"])
    assert first.ports == {"kdc:88": 20000, "kdc:464": 20002}  # 20001 is bound
    second = reg.allocate("b", userns=False, services=["kdc"], ports=["kdc:88"])
    assert second.ports == {"kdc:88": 20003}
    # Again, or with a port more: what it had is kept.
    again = reg.allocate("a", userns=False, services=["kdc"],
                         ports=["kdc:88", "kdc:464", "kdc:749"])
    assert again.ports == {"kdc:88": 20000, "kdc:464": 20002, "kdc:749": 20004}
    assert Registry(tmp_path / "state").recorded()["a"].ports == again.ports  # on disk
    reg.release("a")
    assert reg.allocate("c", userns=False, services=[], ports=["x:1"]).ports == {"x:1": 20000}


def test_a_record_without_ports_gets_them(tmp_path: Path) -> None:
    """A registry written before ports were recorded reads as having none."""
    reg = registry(tmp_path, [Interval(20000, 10)])
    reg.allocate("a", userns=False, services=["kdc"])
    path = tmp_path / "state" / "idranges.json"
    path.write_text(path.read_text().replace('"ports": {}', '"other": 1'))
    assert reg.allocate("a", userns=False, services=["kdc"], ports=["kdc:88"]).ports == {
        "kdc:88": 20000}


def test_a_released_record_names_its_ports() -> None:
    """`down --volumes` prints what went back to the registry, ports included."""
    ids = StackIds(uids={"kdc": 2_000_000_001},
                   ports={"kdc:88": 20001, "kdc:464": 20000, "kdc:749": 20002, "x:1": 20007})
    assert ids.describe() == "UID 2000000001 (kdc), 4 host port(s) (20000-20002, 20007)"


def test_a_lost_record_is_rebuilt_from_the_containers_ports(tmp_path: Path) -> None:
    """The stack's containers hold their ports (so the probe calls them bound): a record
    lost, or written by an older ipabuild, takes them back instead of moving the stack.
    Ports podman picked before (the ephemeral range) and another stack's are not kept."""
    reg = registry(tmp_path, [Interval(20000, 10)], bound={20005, 20006})
    reg.allocate("other", userns=False, services=[], ports=["x:1"])  # gets 20000
    ids = reg.allocate("a", userns=False, services=[], ports=["kdc:88", "kdc:464", "ldap:389"],
                       port_evidence={"kdc:88": 20005, "kdc:464": 40123, "ldap:389": 20000})
    assert ids.ports["kdc:88"] == 20005  # its own, though bound (by its own container)
    assert ids.ports["kdc:464"] == 20001 and ids.ports["ldap:389"] == 20002
