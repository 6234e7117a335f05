"""The host ports a stack publishes its containers' ports on: chosen by ipabuild below
the kernel's ephemeral port range, one per container port (its TCP and UDP alike), and
recorded with the stack's host IDs (``idranges.Registry``), so they stay the same for
the stack's life.

Why not podman's own pick (``-p 127.0.0.1::88/udp``): podman 4.3 picks a "random"
host port by listening on TCP port 0, for a UDP publish too, and then binds UDP on it
unchecked. A port whose UDP side another socket holds fails the container's start
("cannot listen on the UDP port: listen udp4 127.0.0.1:46759: bind: address already in
use", seen in CI when `up` made the kdc again; reproduced by holding UDP on 18,732
ports of the range: 5 starts of 5 failed). And the ephemeral range is where every
client socket on the host gets its port, so a port picked from it can be taken while
its container is stopped. Below the range, the kernel hands out no port by itself: only
a program that asks for that number gets it.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from pathlib import Path

from ipabuild.core.errors import UsageError
from ipabuild.stack.intervals import Interval, subtract

PORT_POOL = Interval(20000, 65536 - 20000, "ipabuild's host ports")
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOOPBACK = "127.0.0.1"  # what every published port binds (``ServicePlan.create_args``)


def ephemeral_range(path: Path = EPHEMERAL_RANGE) -> Interval:
    """The kernel's range for ports it picks itself (net.ipv4.ip_local_port_range)."""
    try:
        low, high = (int(part) for part in path.read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999  # Linux's default
    return Interval(low, high - low + 1, "the kernel's ephemeral port range")


def port_pool(path: Path = EPHEMERAL_RANGE) -> list[Interval]:
    """Ports ipabuild publishes on: 20000-65535 outside the ephemeral range."""
    return subtract([PORT_POOL], [ephemeral_range(path)])


def port_free(port: int, address: str = LOOPBACK) -> bool:
    """Whether ``port`` can be bound on ``address`` for TCP and UDP both, now."""
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as probe:
            if kind == socket.SOCK_STREAM:
                # A closed connection's TIME_WAIT does not keep a listener out.
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((address, port))
            except OSError:
                return False
    return True


def pick_port(pool: list[Interval], taken: Iterable[int],
              is_free: Callable[[int], bool] = port_free) -> int:
    """The lowest port of ``pool`` that no record holds and nothing has bound."""
    held = set(taken)
    for block in pool:
        for port in range(block.start, block.end):
            if port not in held and is_free(port):
                return port
    where = ", ".join(map(str, pool)) or (f"{PORT_POOL}: the kernel's ephemeral range "
                                          "covers all of it")
    raise UsageError(f"no free host port left in {where} (ports ipabuild publishes on, "
                     f"outside the kernel's ephemeral range)",
                     "remove stacks you no longer need with `ipabuild down --name NAME "
                     "--volumes`, or narrow net.ipv4.ip_local_port_range")
