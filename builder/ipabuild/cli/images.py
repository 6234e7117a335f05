"""The build stage's commands: ``images`` (build, cache, push) and ``schema`` (the spec's
JSON Schema)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ipabuild.cli.base import fail, main, project_root
from ipabuild.core.errors import IpabuildError


@main.command()
@click.option("--service", "services", default="",
              help="Comma-separated services to build (default: all under services/).")
@click.option("--family", default=None, help="Distribution family (default: ipabuild.yaml's).")
@click.option("--tag", default=None, help="Image tag (default: ipabuild.yaml's image.tag).")
@click.option("--push", "push", default=None, metavar="REGISTRY",
              help="Push each image to REGISTRY[/path] as <service>:<tag> after building.")
@click.option("--tls-verify/--no-tls-verify", default=None,
              help="Verify the registry's TLS (default: on, off for localhost/127.0.0.1).")
@click.option("--render-only", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Write each service's Containerfile and files to DIR/<service>; no build.")
@click.option("--json", "json_output", is_flag=True,
              help="Print one JSON document (per image: name, id, size, cache hit, seconds).")
@click.option("--no-cache", is_flag=True, help="Rebuild even when the cache key matches.")
@click.option("--jobs", default=2, show_default=True, help="Images built concurrently.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@click.pass_context
def images(ctx: click.Context, services: str, family: str | None, tag: str | None,
           push: str | None, tls_verify: bool | None, render_only: str | None,
           json_output: bool, no_cache: bool, jobs: int, quiet: bool) -> None:
    """Build the unprivileged service images (ldap, kdc, http, ca) and the client toolbox.

    Images are named <prefix>/<service>:<tag>. An image whose cache key (rendered
    build context + base image ID) is unchanged is not rebuilt. Bases that cannot be
    pulled are bootstrapped with mmdebstrap. Exit status: 0 all images ready, 1 a
    build or push failed (the others are still reported), 2 a spec error.
    """
    from ipabuild.build.images import ImageBuilder
    from ipabuild.build.results import BuildOptions
    from ipabuild.build.summary import summary_table
    from ipabuild.core.progress import reporter
    from ipabuild.core.tables import print_table
    from ipabuild.spec.load import load_project, load_services

    try:
        root = project_root(ctx.obj["root"])
        project = load_project(root)
        wanted = [s.strip() for s in services.split(",") if s.strip()]
        # By default: the split services and the client toolbox a user runs against them.
        loaded = load_services(root, project, wanted, modes=("split", "client"))
        options = BuildOptions(
            family=family or project.default_family, tag=tag or project.image.tag,
            no_cache=no_cache, jobs=jobs, push=push, tls_verify=tls_verify,
            render_only=Path(render_only) if render_only else None,
        )
        with reporter(json_output, quiet) as report:
            builder = ImageBuilder(root, project, options, report, root / ".ipabuild")
            results = builder.run(loaded)
    except IpabuildError as exc:
        fail(exc)
        return
    if json_output:
        click.echo(json.dumps({"family": options.family, "tag": options.tag,
                               "images": [r.to_json() for r in results]}, indent=2))
    elif not quiet:
        print_table(summary_table(results))
        for r in results:
            if r.status == "failed":
                click.echo(f"\n{r.service}: failed at {r.failed_step or 'an early step'}"
                           f" (log: {r.log or 'none'})\n{r.error}", err=True)
    sys.exit(1 if any(r.status == "failed" for r in results) else 0)


@main.command()
@click.argument("kind", type=click.Choice(["project", "service"]))
def schema(kind: str) -> None:
    """Print the JSON Schema of ipabuild.yaml (project) or service.yaml (service).

    Point an editor's YAML language server at it for completion and checks; the same
    files are committed under docs/schema/.
    """
    from ipabuild.spec.load import json_schema

    click.echo(json.dumps(json_schema(kind), indent=2, sort_keys=True))
