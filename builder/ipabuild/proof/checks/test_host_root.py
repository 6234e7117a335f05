"""No container process is root on the host: the checks behind ``ipabuild verify``.

Host-side facts come from /proc (ipabuild.core.procfacts); inside-view facts through
testinfra's podman backend. Every assertion names the offending process.
"""

from __future__ import annotations

import warnings

import testinfra

from ipabuild.proof.targets import ContainerFacts

CONTRACT_CAPABILITIES: set[str] = set()  # the image contract: no effective capability


def test_processes_were_measured(container: ContainerFacts) -> None:
    """Every other check is vacuous on an empty process list: refuse one."""
    assert container.processes, f"{container.name}: no process could be read from /proc"


def test_no_process_has_host_uid_0(container: ContainerFacts) -> None:
    offenders = [f"pid {p.pid} ({p.command}) host UIDs r/e/s/fs={p.uids_host}"
                 for p in container.processes if p.host_root_uid]
    assert not offenders, f"{container.name}: processes root on the host: {offenders}"


def test_uid_map_never_reaches_host_root(container: ContainerFacts) -> None:
    """A user namespace must not map any ID onto host UID 0. A container in the host's
    namespace has the identity map: then no process may be able to become root."""
    for p in container.processes:
        if p.own_user_namespace:
            assert not p.map_reaches_host_root, (
                f"{container.name}: pid {p.pid} ({p.command}) uid_map maps onto host UID 0: "
                f"{p.uid_map}")
        else:
            assert p.no_new_privs and not p.capabilities_effective, (
                f"{container.name}: pid {p.pid} ({p.command}) shares the host user namespace "
                f"and could regain root (NoNewPrivs={p.no_new_privs}, "
                f"CapEff={p.capabilities_effective})")


def test_split_runs_nothing_as_uid_0_in_any_namespace(container: ContainerFacts) -> None:
    """Split mode's promise is stronger than "not host root": no process is UID 0 even
    inside a user namespace of its own (root there holds every capability over that
    namespace's files and a kernel surface unprivileged users lack). The monolith is
    root in its namespace by design (container-ipa's systemd)."""
    if container.mode == "monolithic":
        return
    offenders = [f"pid {p.pid} ({p.command}) UIDs inside r/e/s/fs={p.uids_container}"
                 for p in container.processes if 0 in p.uids_container]
    assert not offenders, (f"{container.name}: processes run as UID 0 inside their user "
                           f"namespace (split mode runs none): {offenders}")


def test_host_gid_0_is_reported(container: ContainerFacts) -> None:
    """GID 0 outside a user namespace is the host's root group: report it, do not fail."""
    in_host_root_group = [p for p in container.processes
                          if p.host_root_gid and not p.own_user_namespace]
    if in_host_root_group:
        warnings.warn(f"{container.name}: {len(in_host_root_group)} process(es) run with host "
                      "GID 0 (the host's root group; expected for OpenShift-style GID 0 "
                      "without a user namespace)", stacklevel=1)


def test_capabilities_as_the_contract_says(container: ContainerFacts) -> None:
    for p in container.processes:
        if p.own_user_namespace and p.uids_container[1] == 0:
            continue  # root inside its own namespace: capabilities are namespaced
        extra = set(p.capabilities_effective) - CONTRACT_CAPABILITIES
        assert not extra, f"{container.name}: pid {p.pid} ({p.command}) has {sorted(extra)}"


def test_inside_view_daemon_user_is_not_root(container: ContainerFacts) -> None:
    host = testinfra.get_host(f"podman://{container.name}")
    uid = int(host.check_output("id -u"))
    if any(p.own_user_namespace for p in container.processes):
        return  # root inside a user namespace is the documented monolithic case
    assert uid != 0, f"{container.name}: the container's user is root"


def test_inside_view_root_filesystem_is_read_only(container: ContainerFacts) -> None:
    host = testinfra.get_host(f"podman://{container.name}")
    attempt = host.run("touch /usr/.ipabuild-verify-write-test")
    assert attempt.rc != 0, f"{container.name}: /usr is writable (root filesystem not read-only)"


def test_inside_view_binds_no_port_that_needs_a_capability(container: ContainerFacts) -> None:
    host = testinfra.get_host(f"podman://{container.name}")
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        content = host.run(f"cat {table}").stdout.splitlines()[1:]
        for row in content:
            fields = row.split()
            if len(fields) > 3 and fields[3] == "0A":  # LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    # Below the network namespace's own net.ipv4.ip_unprivileged_port_start only a
    # capability (CAP_NET_BIND_SERVICE) binds; a service that lowers it (http, to answer
    # on 80/443 as FreeIPA's clients expect) binds those ports without one.
    start = int(host.run("cat /proc/sys/net/ipv4/ip_unprivileged_port_start").stdout or 1024)
    privileged = sorted(p for p in ports if p < start)
    assert not privileged, (f"{container.name}: listens on {privileged}, below its "
                            f"unprivileged port start {start}: a capability bound them")


def test_stacks_use_disjoint_host_uids(all_containers: list[ContainerFacts]) -> None:
    by_stack: dict[str, set[int]] = {}
    for c in all_containers:
        ids = by_stack.setdefault(c.stack, set())
        for p in c.processes:
            ids.update(p.uids_host)
    stacks = sorted(by_stack)
    for i, first in enumerate(stacks):
        for second in stacks[i + 1:]:
            shared = by_stack[first] & by_stack[second]
            assert not shared, f"stacks {first} and {second} share host UIDs {sorted(shared)}"
