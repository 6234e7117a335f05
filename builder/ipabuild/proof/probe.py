"""``ipabuild probe``: the manual FreeIPA-on-OpenShift investigation as one command.

For a container (or a host PID): every process, its IDs on the host and inside, the
user namespace maps, whether the namespace is the host's, capabilities, NoNewPrivs and
seccomp.
"""

from __future__ import annotations

from rich.table import Table

from ipabuild.core.procfacts import ProcessFacts
from ipabuild.core.tables import new_table

COLUMNS = ("pid", "command", "uid r/e/s/fs host", "uid inside", "gid r/e/s/fs host",
           "user ns", "uid_map", "CapEff", "NoNewPrivs", "seccomp")
WHOLE = ("pid", "command", "user ns", "NoNewPrivs", "seccomp")


def _ids(values: list[int] | list[int | None]) -> str:
    """The four IDs apart by spaces, so a narrow column wraps between IDs, not inside one."""
    return " ".join("?" if v is None else str(v) for v in values)


def probe_table(title: str, processes: list[ProcessFacts]) -> Table:
    """One row per process; rows whose UIDs include host root in bold red."""
    table = new_table(title, COLUMNS, whole=WHOLE)
    for p in processes:
        uid_map = "; ".join(f"{r.inside}->{r.outside} ({r.size})" for r in p.uid_map)
        danger = p.host_root_uid
        table.add_row(
            str(p.pid), p.command, _ids(p.uids_host), _ids(p.uids_container), _ids(p.gids_host),
            "own" if p.own_user_namespace else "host's", uid_map,
            ", ".join(p.capabilities_effective) or "none", "yes" if p.no_new_privs else "no",
            p.seccomp, style="bold red" if danger else "")
    return table
