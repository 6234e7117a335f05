"""The proof stage's commands: ``probe``, ``verify`` and ``posture``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ipabuild.cli.base import fail, main, project_root
from ipabuild.core.errors import IpabuildError


@main.command()
@click.argument("target")
@click.option("--json", "json_output", is_flag=True, help="Print the facts as JSON.")
def probe(target: str, json_output: bool) -> None:
    """Show who the processes of a container (name/ID) or host PID really are on the host.

    For every process: host PID, real/effective/saved/filesystem UIDs and GIDs on the
    host and inside, uid_map/gid_map, whether the user namespace is the host's, CapEff
    decoded, NoNewPrivs and seccomp. Rows root on the host are shown in red.
    """
    from ipabuild.core.tables import print_table
    from ipabuild.proof.probe import probe_table
    from ipabuild.proof.targets import container_facts, pid_facts

    try:
        if target.isdigit():
            processes, title = pid_facts(int(target)), f"PID {target}"
        else:
            from ipabuild.stack.podman_api import connect

            facts = container_facts(connect(), target)
            processes, title = facts.processes, f"container {facts.name}"
    except IpabuildError as exc:
        fail(exc)
        return
    if json_output:
        click.echo(json.dumps({"target": title, "processes": [p.to_json() for p in processes]},
                              indent=2))
    else:
        print_table(probe_table(title, processes))
    sys.exit(1 if any(p.host_root_uid for p in processes) else 0)


@main.command(context_settings={"ignore_unknown_options": True})
@click.option("--name", default=None, help="Only this stack (default: every ipabuild stack).")
@click.option("--mode", type=click.Choice(["split", "monolithic"]), default=None)
@click.argument("pytest_args", nargs=-1, type=click.UNPROCESSED)
def verify(name: str | None, mode: str | None, pytest_args: tuple[str, ...]) -> None:
    """Prove with pytest-testinfra that no container process is root on the host.

    For every process of every selected container: no host UID 0 in any of the four UID
    fields; no user-namespace map onto host UID 0 (a container in the host's namespace
    must have NoNewPrivs and no capabilities instead); host GID 0 reported as a warning;
    capabilities as the contract says; inside view through testinfra's podman backend
    (user, read-only root, unprivileged listening ports); stacks on disjoint host UIDs, and
    each stack's uid_map/gid_map ranges disjoint from every other container's.
    Exit status 1 names the offending process. Extra arguments go to pytest.
    """
    from ipabuild.proof.verify import verify as run_verify

    try:
        status_code = run_verify(name, mode, list(pytest_args))
    except IpabuildError as exc:
        fail(exc)
        return
    sys.exit(status_code)


@main.command()
@click.option("--modes", default="monolithic,split", show_default=True,
              help="Comma-separated modes to compare.")
@click.option("--name", default=None,
              help="Only these stacks, comma-separated, e.g. a split and a monolithic one "
                   "(default: every ipabuild stack).")
@click.option("--json", "json_output", is_flag=True, help="Print the report as JSON.")
@click.option("--html", "html_file", type=click.Path(dir_okay=False), default=None,
              help="Also write a self-contained HTML report to this file.")
@click.option("--manifests-only", is_flag=True,
              help="Only the overlays' static checks (PSS restricted, Checkov); no stack.")
@click.pass_context
def posture(ctx: click.Context, modes: str, name: str | None, json_output: bool,
            html_file: str | None, manifests_only: bool) -> None:
    """Compare the security posture of monolithic and split, side by side, from measurements.

    Per container: in-container UIDs and GIDs, host UID and GID ranges (GID 0 is the
    host's root group), user namespace, capabilities, NoNewPrivs, seccomp, read-only
    root, privileged, processes root inside, root on the host and in the host's root
    group, secrets in env, listening ports, and the image's setuid/setgid files, package
    count and size; per daemon (UID:GID) the blast radius, tried from inside its container
    as that UID: which secrets and keys it reads or writes, which volumes it writes, which
    peers' ports and LDAPI sockets it reaches, beside the peers' ports the mode's
    overlay's NetworkPolicies would allow in a cluster (docs/posture.md); plus, per kustomize
    overlay of the modes, PSS "restricted" violations and Checkov's findings (`pip
    install 'ipabuild[scan]'`), each a documented exception
    (services/common/scanner-exceptions.yaml) or unexplained.
    """
    from ipabuild.core.tables import print_table
    from ipabuild.proof.blastradius import matrix_notes, matrix_table, reach_notes, reach_table
    from ipabuild.proof.posture import posture_table, report_html
    from ipabuild.proof.posture_run import gather_posture
    from ipabuild.proof.scan import findings_notes, findings_table

    try:
        result = gather_posture(project_root(ctx.obj["root"]),
                                [m.strip() for m in modes.split(",") if m.strip()],
                                [n.strip() for n in name.split(",") if n.strip()] if name else [],
                                manifests_only)
    except IpabuildError as exc:
        fail(exc)
        return
    document, scanned = result.document, result.scanned
    if html_file:
        Path(html_file).write_text(report_html(document))
    if json_output:
        click.echo(json.dumps(document, indent=2))
    else:
        if result.rows:
            print_table(posture_table(result.rows))
        for matrix in result.blast or []:
            if matrix.rows:
                print_table(matrix_table(matrix), notes=matrix_notes(matrix))
                print_table(reach_table(matrix), notes=reach_notes(matrix))
        if any(o.findings for o in scanned.overlays):
            print_table(findings_table(scanned), notes=findings_notes(scanned))
        for line in document["summary"]:  # type: ignore[attr-defined]
            click.echo(line)
        if html_file:
            click.echo(f"HTML report: {html_file}")
