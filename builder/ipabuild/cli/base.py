"""The ``ipabuild`` command group and what every command shares: the project root, the
stack option, and turning an error into one line and an exit status.

Exit statuses: 0 success; 1 a runtime failure (a build, a push, a failed check);
2 a configuration or usage error (bad YAML, unknown key, unknown service or family).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ipabuild import __version__
from ipabuild.core.errors import IpabuildError


def project_root(root: str | None) -> Path:
    """``--root`` resolved, else the nearest directory upwards holding ipabuild.yaml."""
    from ipabuild.spec.load import find_root

    return Path(root).resolve() if root else find_root(Path.cwd())


def fail(exc: IpabuildError) -> None:
    """Print ``exc`` as one line (plus its fix) and exit with its status."""
    click.echo(f"ipabuild: error: {exc.user_message()}", err=True)
    sys.exit(exc.exit_status)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ipabuild")
@click.option("--root", envvar="IPABUILD_ROOT", type=click.Path(file_okay=False),
              help="Project directory holding ipabuild.yaml (default: nearest upwards).")
@click.pass_context
def main(ctx: click.Context, root: str | None) -> None:
    """Build, deploy and prove unprivileged FreeIPA service containers.

    Start with `ipabuild doctor --fix` on a new host, then `ipabuild images`.
    """
    ctx.obj = {"root": root}


STACK_OPTION = click.option("--name", default="ipa", show_default=True,
                            help="Stack name: containers, volumes, network and secrets are "
                                 "named ipabuild-<name>-*, so stacks never clash.")
