"""``doctor``: is this host ready to build and run stacks, and the safe fixes."""

from __future__ import annotations

import json
import sys

import click

from ipabuild.cli.base import main


@main.command()
@click.option("--fix", is_flag=True, help="Apply the safe fixes (containers.conf, sub-IDs).")
@click.option("--json", "json_output", is_flag=True, help="Print the checks as JSON.")
def doctor(fix: bool, json_output: bool) -> None:
    """Check this host can build and run ipabuild's containers; say how to fix what is not.

    Checks buildah, podman, runc, mmdebstrap, a working OCI runtime, the ulimits
    podman sets, the `containers` sub-ID ranges for user namespaces and a kustomize
    (kubectl, kustomize or oc). Exit status 1 when a required check fails.
    """
    from ipabuild.core.tables import print_table
    from ipabuild.doctor import render_report, run_checks

    checks = run_checks(fix=fix)
    if json_output:
        click.echo(json.dumps([c.to_json() for c in checks], indent=2))
    else:
        print_table(render_report(checks))
    sys.exit(1 if any(c.required and not c.ok for c in checks) else 0)
