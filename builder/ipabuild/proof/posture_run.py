"""One ``ipabuild posture`` run: measure the running stacks of the asked modes, scan their
overlays, and assemble the report document (the CLI only prints it).

Nothing is assumed: a mode with nothing running is refused unless only the manifests
are asked for (``manifests_only``), and then no container row is made up.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ipabuild.core.errors import UsageError
from ipabuild.proof.blastprobe import measure
from ipabuild.proof.blastradius import Matrix
from ipabuild.proof.checkov import find_checkov
from ipabuild.proof.posture import (
    OVERLAY_OF_MODE,
    ContainerPosture,
    ImageFacts,
    container_posture,
    report_json,
    with_network_policies,
)
from ipabuild.proof.scan import OVERLAYS_OF_MODE, ScanReport, render_overlays, scan
from ipabuild.proof.targets import stack_containers
from ipabuild.spec.load import load_project, load_services
from ipabuild.spec.model import AbsentDaemon
from ipabuild.stack.podman_api import connect


@dataclass
class PostureResult:
    """What a posture run measured and the document made of it."""

    rows: list[ContainerPosture]
    blast: list[Matrix] | None
    scanned: ScanReport
    document: dict[str, object]


def gather_posture(root: Path, modes: list[str], stacks: list[str],
                   manifests_only: bool) -> PostureResult:
    """Measure ``modes`` (only ``stacks`` when given, else every ipabuild stack) and scan
    their overlays; ``manifests_only`` scans without measuring a stack."""
    unknown = sorted(set(modes) - set(OVERLAY_OF_MODE))
    if unknown:
        raise UsageError(f"unknown mode(s) {', '.join(unknown)}",
                         "use --modes with " + ", ".join(OVERLAY_OF_MODE))
    rows: list[ContainerPosture] = []
    blast = None
    project = load_project(root)
    root_steps: dict[str, str] = {}
    absent: dict[str, list[AbsentDaemon]] = {}
    if not manifests_only:
        client = connect()
        wanted: list[str | None] = list(stacks) or [None]  # None: every ipabuild stack
        containers = [c for stack in wanted for c in stack_containers(client, stack)
                      if c.mode in modes]
        if not containers:
            raise UsageError(f"nothing running in mode(s) {', '.join(modes)}",
                             "start a stack first: `ipabuild up` (images: `ipabuild "
                             "images`), or `ipabuild posture --manifests-only`")
        images: dict[str, ImageFacts] = {}
        rows = [container_posture(c, images) for c in containers]
        specs = {s.name: s for s in load_services(root, project, [],
                                                  modes=tuple(OVERLAY_OF_MODE))}
        blast = measure(containers, specs, modes)
        root_steps = {name: spec.init.reason or "declared in its spec"
                      for name, spec in specs.items()
                      if spec.init is not None and spec.init.root_in_user_namespace}
        for spec in specs.values():
            absent.setdefault(spec.mode, []).extend(spec.upstream_absent)
    overlays = [o for m in modes for o in OVERLAYS_OF_MODE[m]]
    rendered = render_overlays(root, overlays)
    scanned = scan(root, load_services(root, project, []), overlays, find_checkov(), rendered)
    with_network_policies(blast or [], rendered)
    pss = {o.overlay: o.pss for o in scanned.overlays}
    manifests = {m: pss.get(OVERLAY_OF_MODE[m], {}) for m in modes}
    document = report_json(rows, modes, manifests, scanned, blast, root_steps, absent)
    return PostureResult(rows, blast, scanned, document)
