"""``ipabuild posture``: monolithic vs split, side by side, from measured facts only.

Runtime facts come from /proc of the running containers (ipabuild.proof.targets), image facts
from the image's own filesystem (``podman image mount``), static facts from the built
kustomize overlays (the PSS "restricted" checker). A mode with nothing running is shown
as not measured, never filled in with assumptions.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.table import Table

from ipabuild import TEMPLATES
from ipabuild.build.imagestore import inspect_image
from ipabuild.core.commands import run
from ipabuild.core.tables import new_table
from ipabuild.proof.blastradius import Matrix
from ipabuild.proof.blastradius import summary as blast_summary
from ipabuild.proof.scan import ScanReport, summary_lines
from ipabuild.proof.targets import ContainerFacts
from ipabuild.spec.model import AbsentDaemon

SECRET_ENV = re.compile(r"PASSWORD|SECRET|TOKEN|PASSPHRASE|_KEY$", re.IGNORECASE)
OVERLAY_OF_MODE = {"split": "split-userns", "monolithic": "monolithic-userns"}


@dataclass
class ImageFacts:
    """Attack surface of an image, read from its filesystem."""

    name: str
    size_bytes: int = 0
    packages: int = 0
    setid_files: list[str] = field(default_factory=list)


@dataclass
class ContainerPosture:
    """One container's row of the report."""

    mode: str
    stack: str
    service: str
    container: str
    uids_in_container: list[int | None]
    host_uid_range: list[int]
    gids_in_container: list[int | None]
    host_gid_range: list[int]  # [0, ...] without a user namespace: the host's root group
    user_namespace: str
    capabilities: list[str]
    no_new_privs: bool
    seccomp: list[str]
    read_only_root: bool
    privileged: bool
    root_in_container_processes: int
    root_commands: list[str]  # what runs as UID 0 inside, by command name
    host_root_processes: int
    host_root_group_processes: int
    secrets_in_env: list[str]
    listening_ports: list[int]
    image: ImageFacts
    declared_exceptions: str = ""  # the spec's contract exceptions, from the image label


def listening_ports(pid: int) -> list[int]:
    """TCP ports in LISTEN state in the network namespace of ``pid``."""
    from ipabuild.proof.blastprobe import listening_sockets

    return sorted(set(listening_sockets(pid).values()))


def image_facts(name: str) -> ImageFacts:
    """Size, package count and setuid/setgid files of ``name`` (mounted read-only)."""
    info = inspect_image(name)
    facts = ImageFacts(name, info.size if info else 0)
    mounted = run(["podman", "image", "mount", name], check=False)
    if not mounted.succeeded:
        return facts
    top = Path(mounted.stdout.strip())
    try:
        status = top / "var/lib/dpkg/status"
        if status.exists():
            facts.packages = status.read_text(errors="replace").count("\nPackage: ") + 1
        for directory, _, files in os.walk(top):
            for file in files:
                path = Path(directory, file)
                try:
                    mode = path.lstat().st_mode
                except OSError:
                    continue
                if stat.S_ISREG(mode) and mode & (stat.S_ISUID | stat.S_ISGID):
                    facts.setid_files.append("/" + str(path.relative_to(top)))
    finally:
        run(["podman", "image", "unmount", name], check=False)
    return facts


def _range(ids: set[int]) -> list[int]:
    """[lowest, highest] of the IDs seen on the host, [] when nothing was measured."""
    return [min(ids), max(ids)] if ids else []


def _inside(ids: set[int | None]) -> list[int | None]:
    """Sorted, an unmapped ID (None) first."""
    return sorted(ids, key=lambda v: -1 if v is None else v)


def container_posture(facts: ContainerFacts, images: dict[str, ImageFacts]) -> ContainerPosture:
    processes = facts.processes
    if facts.image not in images:
        images[facts.image] = image_facts(facts.image)
    return ContainerPosture(
        mode=facts.mode or "unknown", stack=facts.stack, service=facts.service,
        container=facts.name,
        uids_in_container=_inside({p.uids_container[1] for p in processes}),
        host_uid_range=_range({uid for p in processes for uid in p.uids_host}),
        gids_in_container=_inside({p.gids_container[1] for p in processes}),
        host_gid_range=_range({gid for p in processes for gid in p.gids_host}),
        user_namespace="own" if any(p.own_user_namespace for p in processes) else "host's",
        capabilities=sorted({c for p in processes for c in p.capabilities_effective}),
        no_new_privs=all(p.no_new_privs for p in processes),
        seccomp=sorted({p.seccomp for p in processes}),
        read_only_root=facts.read_only_root, privileged=facts.privileged,
        root_in_container_processes=sum(1 for p in processes if p.uids_container[1] == 0),
        root_commands=sorted({p.command for p in processes if p.uids_container[1] == 0}),
        host_root_processes=sum(1 for p in processes if p.host_root_uid),
        host_root_group_processes=sum(1 for p in processes if p.host_root_gid),
        secrets_in_env=[n for n in facts.env_names if SECRET_ENV.search(n)],
        listening_ports=listening_ports(facts.init_pid),
        image=images[facts.image],
        declared_exceptions=_declared_exceptions(facts.image),
    )


def _declared_exceptions(image: str) -> str:
    """What the spec says this image does beyond the contract, and why (its label)."""
    info = inspect_image(image)
    return info.labels.get("io.ipabuild.exceptions", "") if info else ""


def manifest_facts(root: Path, mode: str) -> dict[str, list[str]]:
    """PSS "restricted" violations per workload of the mode's kustomize overlay."""
    from ipabuild.proof.scan import pss_facts, render_overlays

    built = render_overlays(root, [OVERLAY_OF_MODE[mode]])
    return pss_facts(built[OVERLAY_OF_MODE[mode]]) if built else {}


def with_network_policies(blast: list[Matrix], rendered: dict[str, str]) -> None:
    """Give each matrix its mode's overlay's NetworkPolicies (``Matrix.cluster``), read
    from the YAML the static scan built (``scan.render_overlays``), not built again."""
    from ipabuild.proof.netpolicy import PolicyView, policy_view_of_text

    views: dict[str, PolicyView] = {}
    for matrix in blast:
        overlay = OVERLAY_OF_MODE.get(matrix.mode, "")
        if overlay in rendered:
            if overlay not in views:
                views[overlay] = policy_view_of_text(overlay, rendered[overlay])
            matrix.cluster = views[overlay]


def _root_line(mode: str, inside_root: int, root_steps: Mapping[str, str]) -> str:
    """Whether the mode runs anything as UID 0 in any user namespace, ever: measured for
    the running processes, declared for the one-time steps (which are gone by now)."""
    if not inside_root and not root_steps:
        return (f"{mode}: no process runs as UID 0 in any user namespace, at any time "
                f"(measured: none running; declared: no init step of its services runs "
                f"as root)")
    parts = [f"{inside_root} running process(es)"] if inside_root else []
    parts += [f"{name}'s init step ({why})" for name, why in sorted(root_steps.items())]
    return (f"{mode}: runs as UID 0 inside a user namespace: {'; '.join(parts)} "
            f"(root to the kernel there: its capabilities over that namespace's files)")


def summarise(rows: list[ContainerPosture], modes: list[str],
              root_steps: Mapping[str, str] | None = None,
              absent: Mapping[str, list[AbsentDaemon]] | None = None) -> list[str]:
    """The differences that matter, in words, from the rows; ``root_steps`` are the
    specs' init steps that run as root in a user namespace (service -> reason),
    ``absent`` the daemons upstream runs that a mode's spec leaves out (mode -> them)."""
    lines = []
    for mode in modes:
        mine = [r for r in rows if r.mode == mode]
        if not mine:
            lines.append(f"{mode}: not measured (nothing running in this mode; "
                         f"start it with `ipabuild up --mode {mode}`)")
            continue
        host_root = sum(r.host_root_processes for r in mine)
        root_group = sum(r.host_root_group_processes for r in mine)
        inside_root = sum(r.root_in_container_processes for r in mine)
        own_ns = sum(1 for r in mine if r.user_namespace == "own")
        caps = sorted({c for r in mine for c in r.capabilities})
        lines.append(
            f"{mode}: {len(mine)} container(s); {host_root} process(es) root on the host; "
            f"{root_group} in the host's root group (GID 0); "
            f"{inside_root} root inside a container; {own_ns} in their own user namespace; "
            f"capabilities: {', '.join(caps) or 'none'}; "
            f"read-only root: {sum(r.read_only_root for r in mine)}/{len(mine)}; "
            f"secrets in env: {sum(len(r.secrets_in_env) for r in mine)}")
        services = {r.service for r in mine}
        lines.append(_root_line(mode, inside_root, {
            name: why for name, why in (root_steps or {}).items() if name in services}))
        commands = sorted({c for r in mine for c in r.root_commands})
        if commands:
            lines.append(f"{mode}: root daemons (measured, by command): {', '.join(commands)}")
        lines += [f"{mode}: root upstream, absent here: {d.daemon} (upstream as "
                  f"{d.upstream_user}): {d.why}" for d in (absent or {}).get(mode, [])]
        for row in mine:
            if row.declared_exceptions:
                lines.append(f"{mode}: declared exception of {row.service}: "
                             f"{row.declared_exceptions}")
    return lines


TABLE_COLUMNS = ("mode", "service", "container", "UIDs inside", "host UIDs", "GIDs inside",
                 "host GIDs", "user ns", "capabilities", "read-only root", "root on host",
                 "root group on host", "listening")
TABLE_WHOLE = ("mode", "service", "container", "host UIDs", "host GIDs", "user ns")


def _ids(values: list[int] | list[int | None]) -> str:
    """IDs apart by ", "; an ID that maps to nothing inside shows as "?"."""
    return ", ".join("?" if v is None else str(v) for v in values)


def _span(values: list[int]) -> str:
    """A host range as "low-high", one ID when low is high."""
    return "-".join(str(v) for v in sorted(set(values)))


def posture_table(rows: list[ContainerPosture]) -> Table:
    """The measured rows as text, host UIDs beside host GIDs (GID 0 is the host's root
    group, which a container without a user namespace keeps); rows root on the host red."""
    table = new_table("ipabuild posture", TABLE_COLUMNS, whole=TABLE_WHOLE)
    for r in rows:
        table.add_row(
            r.mode, r.service, r.container, _ids(r.uids_in_container), _span(r.host_uid_range),
            _ids(r.gids_in_container), _span(r.host_gid_range), r.user_namespace,
            ", ".join(r.capabilities) or "none", "yes" if r.read_only_root else "no",
            str(r.host_root_processes), str(r.host_root_group_processes),
            " ".join(str(p) for p in r.listening_ports),
            style="bold red" if r.host_root_processes else
            "yellow" if r.host_root_group_processes else "")
    return table


def report_json(rows: list[ContainerPosture], modes: list[str],
                manifests: dict[str, dict[str, list[str]]],
                scanner: ScanReport | None = None,
                blast: list[Matrix] | None = None,
                root_steps: Mapping[str, str] | None = None,
                absent: Mapping[str, list[AbsentDaemon]] | None = None) -> dict[str, object]:
    """The whole report; ``scanner`` is the overlays' PSS and Checkov scan (``scan``),
    ``blast`` the measured "compromise of X exposes" matrix per mode (``blastprobe``),
    ``root_steps`` the specs' root init steps and ``absent`` the daemons upstream runs
    that a mode leaves out (``summarise``)."""
    summary = summarise(rows, modes, root_steps, absent)
    summary += [f"blast radius, {blast_summary(m)}" for m in blast or []]
    summary += summary_lines(scanner) if scanner else []
    document: dict[str, object] = {"modes": modes, "containers": [asdict(r) for r in rows],
                                   "manifests": manifests, "summary": summary}
    if blast is not None:
        document["blast_radius"] = [m.to_json() for m in blast]
    if scanner is not None:
        document["scanner"] = scanner.to_json()
    return document


def report_html(document: dict[str, object]) -> str:
    """A self-contained page (inline CSS, no scripts) a reviewer opens in a browser."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    return env.get_template("posture.html.j2").render(**document)
