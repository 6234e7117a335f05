"""The run stage's commands: ``up``, ``status``, ``down``, ``secrets`` and ``client``."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import click

from ipabuild.cli.base import STACK_OPTION, fail, main, project_root
from ipabuild.core.errors import IpabuildError, UsageError
from ipabuild.stack.containers import state_of


def _stack_context(root_option: str | None, name: str,  # type: ignore[no-untyped-def]
                   wanted: str = "", tag: str | None = None,
                   uids: dict[str, int] | None = None,
                   environment: tuple[str, ...] = (), mode: str = ""):
    from ipabuild.spec.load import load_project, load_services, service_names
    from ipabuild.spec.ordering import monolith_stack, with_dependencies
    from ipabuild.stack.podman_api import another_client, connect
    from ipabuild.stack.stack import Stack

    root = project_root(root_option)
    project = load_project(root)
    services = load_services(root, project, [])
    every = load_services(root, project, service_names(root))
    client = connect()
    if mode == "monolithic":
        wanted_monoliths = {s.name for s in every}
    elif not wanted:
        # An existing stack decides its own services: a monolithic one is its monolith
        # and the server name's proxy (both labelled with the stack's mode).
        running = client.containers.list(all=True, filters={"label": f"io.ipabuild.stack={name}"})
        wanted_monoliths = {c.labels.get("io.ipabuild.service", "") for c in running
                            if c.labels.get("io.ipabuild.mode") == "monolithic"}
    else:
        wanted_monoliths = set()
    monoliths = [s.name for s in every if s.mode == "monolithic" and s.name in wanted_monoliths]
    if monoliths:
        services = monolith_stack(every, monoliths)
    elif wanted:
        names = [w.strip() for w in wanted.split(",") if w.strip()]
        load_services(root, project, names)  # unknown names fail clearly here
        services = with_dependencies(every, names)
    added = _service_environment(environment, [s.name for s in services])
    return root, project, services, Stack(client, project, services, name,
                                          tag or project.image.tag, uids,
                                          client_factory=another_client,
                                          environment=added)


ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _service_environment(values: tuple[str, ...],
                         services: list[str]) -> dict[str, dict[str, str]]:
    """``--env [SERVICE:]NAME=VALUE`` values per service (no SERVICE: every service)."""
    added: dict[str, dict[str, str]] = {}
    for value in values:
        head, equals, setting = value.partition("=")
        target, _, name = head.rpartition(":")
        if not equals or not ENV_NAME.fullmatch(name):
            raise UsageError(f"--env {value!r} is not [SERVICE:]NAME=VALUE",
                             "e.g. --env ca:IPABUILD_RENEW_CHECK=15s")
        if target and target not in services:
            raise UsageError(f"--env {value!r}: no service {target!r} in this stack",
                             f"use one of {', '.join(services)}")
        for service in [target] if target else services:
            added.setdefault(service, {})[name] = setting
    return added


def _service_uids(values: tuple[str, ...]) -> dict[str, int]:
    """``--uid SERVICE=UID`` values as a mapping; a malformed one is a usage error."""
    uids: dict[str, int] = {}
    for value in values:
        service, _, uid = value.partition("=")
        if not service or not uid.isdigit() or service in uids:
            raise UsageError(f"--uid {value!r} is not SERVICE=UID (or names a service twice)",
                             "e.g. --uid ldap=1000680000")
        uids[service] = int(uid)
    return uids


def _client_mount(spec: str) -> str:
    """HOST:PATH[:ro] with HOST made absolute; a missing host path is a usage error."""
    from ipabuild.core.errors import UsageError

    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1].startswith("/") or (
            len(parts) == 3 and parts[2] not in ("ro", "rw")):
        raise UsageError(f"--volume {spec!r} is not HOST:PATH[:ro]",
                         "e.g. -v ./req.csr:/tmp/req.csr:ro (PATH absolute in the toolbox)")
    host = Path(parts[0]).resolve()
    if not host.exists():
        raise UsageError(f"--volume {spec!r}: {host} does not exist", "give an existing path")
    return ":".join([str(host), *parts[1:]])


@main.command(context_settings={"ignore_unknown_options": True})
@STACK_OPTION
@click.option("--ca-file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="PEM file to trust for the API's TLS (default: pin the certificate the "
                   "server presents when the toolbox starts).")
@click.option("--volume", "-v", "volumes", multiple=True, metavar="HOST:PATH[:ro]",
              help="Mount a host file or directory into the toolbox (repeatable), e.g. a "
                   "CSR to submit or a script to run.")
@click.option("--env", "-e", "passed_env", multiple=True, metavar="NAME",
              help="Pass this environment variable into the toolbox (repeatable), e.g. a "
                   "password for kinit that should not appear on a command line.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def client(ctx: click.Context, name: str, ca_file: str | None, volumes: tuple[str, ...],
           passed_env: tuple[str, ...], command: tuple[str, ...]) -> None:
    """Run FreeIPA's client tools against a running stack (default: a shell).

    The toolbox image (ipa CLI, ipa-getkeytab, kinit, ldapsearch, curl) runs in a
    container of its own on the stack's network, configured for the stack's realm; it
    enrolls nothing and touches nothing on the host. Examples:

      ipabuild client -- sh -c 'kinit admin && ipa user-find'

      ipabuild client --name tenant1 ipa ping
    """
    import os

    from ipabuild.core.errors import UsageError
    from ipabuild.spec.load import load_project, load_services, service_names
    from ipabuild.stack.client import client_service, plan_client_run

    try:
        root = project_root(ctx.obj["root"])
        project = load_project(root)
        toolbox = client_service(load_services(root, project, service_names(root)))
        _, _, _, stack = _stack_context(ctx.obj["root"], name)
        hosts = stack.host_entries()
        missing = [n for n in passed_env if n not in os.environ]
        if missing:
            raise UsageError(f"--env {', '.join(missing)}: not set in this environment",
                             "export it first, or drop the option")
        environment = {n: os.environ[n] for n in passed_env}
        mounts = tuple(_client_mount(v) for v in volumes)
        if ca_file:
            mounts += (f"{Path(ca_file).resolve()}:/run/ipabuild/ca.pem:ro",)
            environment["IPA_CA_FILE"] = "/run/ipabuild/ca.pem"
        run = plan_client_run(project, toolbox, name, project.image.tag,
                              hosts, sys.stdin.isatty(), environment, mounts)
        if not stack.client.images.exists(run.image):
            raise UsageError(f"the client toolbox image {run.image} is missing",
                             f"build it with `ipabuild images --service {toolbox.name}`")
    except IpabuildError as exc:
        fail(exc)
        return
    argv = run.argv(list(command))
    os.execvpe(argv[0], argv, run.process_environment(dict(os.environ)))


@main.command()
@STACK_OPTION
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Write the files here instead of .ipabuild/secrets/<name>/ "
                   "(e.g. kustomize/secrets for the manifests' secretGenerator).")
@click.option("--podman", "to_podman", is_flag=True,
              help="Also store them as podman secrets under their plain names "
                   "(what compose/compose.yaml mounts).")
@click.pass_context
def secrets(ctx: click.Context, name: str, out: str | None, to_podman: bool) -> None:
    """Generate the bootstrap secrets a stack needs (files mode 0600; never overwritten).

    Directory Manager password, KDC master key, service-principal passwords, CA
    passwords: every secret a service spec declares. They reach containers as mounted
    files (podman secrets, Kubernetes Secret volumes), never as environment variables.
    """
    from ipabuild.spec.load import load_project, load_services
    from ipabuild.stack.secrets import ensure_secrets, secret_names, secrets_dir

    try:
        root = project_root(ctx.obj["root"])
        services = load_services(root, load_project(root), [])
        directory = Path(out) if out else secrets_dir(root, name)
        files = ensure_secrets(directory, secret_names(services))
        if to_podman:
            from ipabuild.stack.podman_api import connect, store_secrets

            store_secrets(connect(), {n: files.path(n) for n in files.names})
    except IpabuildError as exc:
        fail(exc)
        return
    for secret in files.names:
        state = "created" if secret in files.created else "unchanged"
        click.echo(f"{state:9} {files.path(secret)}")


@main.command()
@STACK_OPTION
@click.option("--mode", type=click.Choice(["split", "monolithic"]), default="split",
              show_default=True,
              help="split: one unprivileged container per service; monolithic: every daemon "
                   "in one container, root inside its own user namespace. Either way the "
                   "server name's proxy stands in front, as a cluster's Service would.")
@click.option("--service", "wanted", default="",
              help="Comma-separated services to start (with what they depend on); "
                   "default: all.")
@click.option("--tag", default=None,
              help="Image tag to run (default: ipabuild.yaml's image.tag). A stack's volumes "
                   "outlive its images: `down`, then `up --tag NEW` upgrades it in place.")
@click.option("--uid", "uids", multiple=True, metavar="SERVICE=UID",
              help="Run SERVICE as this host UID (with GID 0), as OpenShift assigns one, "
                   "instead of one allocated from the registry; refused if another stack, "
                   "container, host account or sub-ID range has it. Repeatable; fixed for "
                   "the stack's volumes until `down --volumes`.")
@click.option("--env", "environment", multiple=True, metavar="[SERVICE:]NAME=VALUE",
              help="Set an environment variable in SERVICE's container (without SERVICE: "
                   "in every container), on top of the image's; a container whose "
                   "environment changes is made again. E.g. the renewer's knobs: "
                   "ca:IPABUILD_RENEW_BEFORE=28d, ca:IPABUILD_RENEW_CHECK=1h, "
                   "IPABUILD_CERT_POLL=300 (docs/certificates.md). Repeatable.")
@click.pass_context
def up(ctx: click.Context, name: str, mode: str, wanted: str, tag: str | None,
       uids: tuple[str, ...], environment: tuple[str, ...]) -> None:
    """Start a stack with podman, in dependency order, waiting for each to be healthy.

    ldap first, then kdc and ca, then http; each as a non-root UID with GID 0, read-only
    root, all capabilities dropped, on a podman network with one alias per service.
    Secrets are created first if absent (see `ipabuild secrets`). Volumes persist
    across `down`/`up`.
    """
    from ipabuild.core.progress import PlainReporter
    from ipabuild.stack.secrets import ensure_secrets, secret_names, secrets_dir

    try:
        root, _project, services, stack = _stack_context(ctx.obj["root"], name, wanted, tag,
                                                         _service_uids(uids), environment,
                                                         mode)
        files = ensure_secrets(secrets_dir(root, name), secret_names(services))
        rows = stack.up(files, PlainReporter())
    except IpabuildError as exc:
        fail(exc)
        return
    _print_status(rows, json_output=False)


@main.command()
@STACK_OPTION
@click.option("--json", "json_output", is_flag=True, help="Print the rows as JSON.")
@click.pass_context
def status(ctx: click.Context, name: str, json_output: bool) -> None:
    """Per service: container, state, health, published ports, host PID, UIDs."""
    try:
        _root_dir, _project, _services, stack = _stack_context(ctx.obj["root"], name)
        rows = stack.status()
    except IpabuildError as exc:
        fail(exc)
        return
    _print_status(rows, json_output)
    sys.exit(0 if all(r.health in ("healthy", "none") for r in rows) else 1)


@main.command()
@STACK_OPTION
@click.option("--json", "json_output", is_flag=True, help="Print the rows as JSON.")
@click.option("--renew", "renew", default="", metavar="CERT[,CERT]",
              help="First have the stack's renewer renew these certificates now, whatever "
                   "their dates (names as listed, e.g. http-tls,subsystem); Dogtag's own "
                   "make the CA restart Tomcat. Then list.")
@click.pass_context
def certs(ctx: click.Context, name: str, json_output: bool, renew: str) -> None:
    """Every certificate of a running stack: role, where it lives, subject, serial,
    issuer, not-after, days left, who renews it and what the renewer recorded.

    Each certificate is read from the container that uses it (what it serves, not what
    was published). Exit status 1 when one is expired, cannot be read, or its renewal
    is failing; the lines under the table say which.
    """
    from dataclasses import asdict

    from ipabuild.core.tables import print_table
    from ipabuild.stack.certs import attention, inventory, renew_now
    from ipabuild.stack.view import certificates_table

    try:
        _root_dir, _project, _services, stack = _stack_context(ctx.obj["root"], name)
        if not any(state_of(c) == "running" for c in stack.containers()):
            raise UsageError(f"stack {name!r} is not running",
                             f"start it: ipabuild up --name {name}")
        if renew:
            code, said = renew_now(stack.client, stack.plans,
                                   [n.strip() for n in renew.split(",") if n.strip()])
            if code != 0:
                raise IpabuildError(f"renewing {renew} failed: {said.splitlines()[-1:]}")
            click.echo(said, err=True)
        rows = inventory(stack.client, stack.plans)
    except IpabuildError as exc:
        fail(exc)
        return
    problems = attention(rows)
    if json_output:
        click.echo(json.dumps([{**asdict(r), "expired": r.expired} for r in rows], indent=2))
    else:
        print_table(certificates_table(rows), notes=problems)
    failing = [r for r in rows if r.error or r.expired or r.renewal.startswith("failing")]
    sys.exit(1 if failing else 0)


@main.command()
@STACK_OPTION
@click.option("--volumes", is_flag=True, help="Also remove the stack's volumes (its data).")
@click.pass_context
def down(ctx: click.Context, name: str, volumes: bool) -> None:
    """Stop and remove a stack's containers, network and podman secrets.

    Volumes stay (the next `up` starts from them) unless --volumes.
    """
    try:
        _root_dir, _project, _services, stack = _stack_context(ctx.obj["root"], name)
        removed = stack.down(volumes)
    except IpabuildError as exc:
        fail(exc)
        return
    for item in removed:
        click.echo(f"removed {item}")


def _print_status(rows: list, json_output: bool) -> None:  # type: ignore[type-arg]
    from dataclasses import asdict

    from ipabuild.core.tables import print_table
    from ipabuild.stack.view import status_table

    if json_output:
        click.echo(json.dumps([asdict(r) for r in rows], indent=2))
        return
    print_table(status_table(rows))
