"""The emit stage's commands: ``manifests`` (kustomize/) and ``compose`` (compose/)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ipabuild.cli.base import fail, main, project_root
from ipabuild.core.errors import IpabuildError, UsageError


@main.command()
@click.option("--check", is_flag=True,
              help="Exit 1 if compose/compose.yaml differs from what the specs produce.")
@click.pass_context
def compose(ctx: click.Context, check: bool) -> None:
    """Write compose/compose.yaml (the split stack for podman-compose) from the specs."""
    from ipabuild.emit.compose import COMPOSE_FILE, render_compose, write_compose
    from ipabuild.spec.load import load_project, load_services

    try:
        root = project_root(ctx.obj["root"])
        project = load_project(root)
        text = render_compose(project, load_services(root, project, []))
    except IpabuildError as exc:
        fail(exc)
        return
    path = root / COMPOSE_FILE
    if check:
        current = path.read_bytes().decode(errors="replace") if path.exists() else ""
        if current != text:
            click.echo(f"{COMPOSE_FILE} is out of date: run `ipabuild compose`", err=True)
            sys.exit(1)
        click.echo(f"{COMPOSE_FILE} is up to date")
        return
    changed = write_compose(root, text)
    click.echo(f"{'wrote' if changed else 'unchanged'} {COMPOSE_FILE}")


@main.command()
@click.option("--check", is_flag=True,
              help="Exit 1 if kustomize/ differs from what the specs produce (names the files).")
@click.option("--registry", default=None, metavar="REGISTRY",
              help="Image registry[/path] of the split images (default: ipabuild.yaml's "
                   "image.prefix); what `ipabuild images --push` pushed to.")
@click.option("--tag", default=None, help="Image tag (default: ipabuild.yaml's image.tag).")
@click.option("--monolith-tag", default=None,
              help="Tag of quay.io/freeipa/freeipa-server for monolithic-userns.")
@click.option("--namespace", default=None,
              help="Namespace of every object (default: ipabuild.yaml's namespace).")
@click.option("--digests", is_flag=True,
              help="Name each split image by the digest REGISTRY holds for its tag (skopeo).")
@click.option("--digests-from", type=click.Path(dir_okay=False), default=None,
              metavar="PUSH.json",
              help="Name each split image by the digest `ipabuild images --push R --json` "
                   "recorded (and its registry).")
@click.option("--tls-verify/--no-tls-verify", default=None,
              help="For --digests: verify the registry's TLS (default: on, off for "
                   "localhost/127.0.0.1).")
@click.option("--monolith-digest", default=None, metavar="sha256:...",
              help="Name quay.io/freeipa/freeipa-server by this digest in monolithic-userns.")
@click.pass_context
def manifests(ctx: click.Context, check: bool, registry: str | None, tag: str | None,
              monolith_tag: str | None, namespace: str | None, digests: bool,
              digests_from: str | None, tls_verify: bool | None,
              monolith_digest: str | None) -> None:
    """Write kustomize/ (base, components, overlays split, split-userns, monolithic-userns).

    Same specs and options, same bytes. Secret values are not written: run
    `ipabuild secrets --out kustomize/secrets` before `kubectl apply -k`. With --digests
    or --digests-from the images are named by digest, so a cluster runs exactly what was
    pushed. Exit status: 0 written or current, 1 --check found differences, 2 a spec
    manifests cannot express, or a digest that cannot be had.
    """
    from ipabuild.build.registry import check_digest, push_digests, registry_digests
    from ipabuild.emit.manifests.monolith import DEFAULT_TAG as MONOLITH_TAG
    from ipabuild.emit.tree import (
        KUSTOMIZE_DIR,
        ManifestOptions,
        check_manifests,
        render_manifests,
        write_manifests,
    )
    from ipabuild.spec.load import load_project, load_services
    from ipabuild.spec.model import namespace_problem

    try:
        root = project_root(ctx.obj["root"])
        project = load_project(root)
        if namespace is not None:
            problem = namespace_problem(namespace)
            if problem:
                raise UsageError(f"--namespace {namespace!r}: {problem}",
                                 "give a lower-case DNS label such as ipabuild")
            project = project.model_copy(update={"namespace": namespace})
        services = load_services(root, project, [])
        registry = registry or project.image.prefix
        tag = tag or project.image.tag
        pinned: dict[str, str] = {}
        if digests and digests_from:
            raise UsageError("--digests and --digests-from both name the digests",
                             "use one of them")
        if digests:
            pinned = registry_digests(registry, tag, [s.name for s in services], tls_verify)
        elif digests_from:
            pushed_registry, pinned = push_digests(Path(digests_from),
                                                   [s.name for s in services])
            registry = pushed_registry
        options = ManifestOptions(
            registry, tag, monolith_tag or MONOLITH_TAG, project.namespace, pinned,
            check_digest(monolith_digest, "--monolith-digest") if monolith_digest else "")
        files = render_manifests(project, services, options)
    except IpabuildError as exc:
        fail(exc)
        return
    if check:
        drifts = check_manifests(root, files)
        if drifts:
            click.echo(f"{KUSTOMIZE_DIR}/ is out of date ({len(drifts)} files): run "
                       "`ipabuild manifests` with the same options", err=True)
            for drift in drifts:
                click.echo(drift.summary(), err=True)
            sys.exit(1)
        click.echo(f"{KUSTOMIZE_DIR}/ is up to date ({len(files)} files)")
        return
    report = write_manifests(root, files)
    for path in report.written:
        click.echo(f"wrote     {KUSTOMIZE_DIR}/{path}")
    for path in report.removed:
        click.echo(f"removed   {KUSTOMIZE_DIR}/{path}")
    click.echo(f"{len(report.unchanged)} files unchanged")
