"""The command line: parses arguments, calls a stage, turns errors into one line + status.

Exit statuses: 0 success; 1 a runtime failure (a build, a push, a failed check);
2 a configuration or usage error (bad YAML, unknown key, unknown service or family).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ipabuild import __version__
from ipabuild.core.errors import IpabuildError, UsageError


def _root(root: str | None) -> Path:
    from ipabuild.spec.load import find_root

    return Path(root).resolve() if root else find_root(Path.cwd())


def _fail(exc: IpabuildError) -> None:
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
        root = _root(ctx.obj["root"])
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
        _fail(exc)
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


def _stack_context(root_option: str | None, name: str,  # type: ignore[no-untyped-def]
                   wanted: str = "", tag: str | None = None,
                   uids: dict[str, int] | None = None):
    from ipabuild.spec.load import load_project, load_services
    from ipabuild.spec.ordering import with_dependencies
    from ipabuild.stack.podman_api import another_client, connect
    from ipabuild.stack.stack import Stack

    root = _root(root_option)
    project = load_project(root)
    services = load_services(root, project, [])
    client = connect()
    if not wanted:
        # An existing stack decides its own services (a monolith is one container).
        running = client.containers.list(all=True, filters={"label": f"io.ipabuild.stack={name}"})
        wanted = ",".join(sorted({c.labels.get("io.ipabuild.service", "") for c in running
                                  if c.labels.get("io.ipabuild.mode") == "monolithic"}))
    if wanted:
        from ipabuild.spec.load import service_names

        names = [w.strip() for w in wanted.split(",") if w.strip()]
        load_services(root, project, names)  # unknown names fail clearly here
        services = with_dependencies(load_services(root, project, service_names(root)), names)
    return root, project, services, Stack(client, project, services, name,
                                          tag or project.image.tag, uids,
                                          client_factory=another_client)


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


STACK_OPTION = click.option("--name", default="ipa", show_default=True,
                            help="Stack name: containers, volumes, network and secrets are "
                                 "named ipabuild-<name>-*, so stacks never clash.")


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
        root = _root(ctx.obj["root"])
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
        _fail(exc)
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
        root = _root(ctx.obj["root"])
        services = load_services(root, load_project(root), [])
        directory = Path(out) if out else secrets_dir(root, name)
        files = ensure_secrets(directory, secret_names(services))
        if to_podman:
            from ipabuild.stack.podman_api import connect, store_secrets

            store_secrets(connect(), {n: files.path(n) for n in files.names})
    except IpabuildError as exc:
        _fail(exc)
        return
    for secret in files.names:
        state = "created" if secret in files.created else "unchanged"
        click.echo(f"{state:9} {files.path(secret)}")


@main.command()
@STACK_OPTION
@click.option("--mode", type=click.Choice(["split", "monolithic"]), default="split",
              show_default=True,
              help="split: one unprivileged container per service; monolithic: every daemon "
                   "in one container, root inside its own user namespace.")
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
@click.pass_context
def up(ctx: click.Context, name: str, mode: str, wanted: str, tag: str | None,
       uids: tuple[str, ...]) -> None:
    """Start a stack with podman, in dependency order, waiting for each to be healthy.

    ldap first, then kdc and ca, then http; each as a non-root UID with GID 0, read-only
    root, all capabilities dropped, on a podman network with one alias per service.
    Secrets are created first if absent (see `ipabuild secrets`). Volumes persist
    across `down`/`up`.
    """
    from ipabuild.core.progress import PlainReporter
    from ipabuild.stack.secrets import ensure_secrets, secret_names, secrets_dir

    try:
        if mode == "monolithic":
            wanted = "monolithic"
        root, _project, services, stack = _stack_context(ctx.obj["root"], name, wanted, tag,
                                                         _service_uids(uids))
        files = ensure_secrets(secrets_dir(root, name), secret_names(services))
        rows = stack.up(files, PlainReporter())
    except IpabuildError as exc:
        _fail(exc)
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
        _fail(exc)
        return
    _print_status(rows, json_output)
    sys.exit(0 if all(r.health in ("healthy", "none") for r in rows) else 1)


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
        _fail(exc)
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


@main.command()
@click.option("--check", is_flag=True,
              help="Exit 1 if compose/compose.yaml differs from what the specs produce.")
@click.pass_context
def compose(ctx: click.Context, check: bool) -> None:
    """Write compose/compose.yaml (the split stack for podman-compose) from the specs."""
    from ipabuild.emit.compose import COMPOSE_FILE, render_compose, write_compose
    from ipabuild.spec.load import load_project, load_services

    try:
        root = _root(ctx.obj["root"])
        project = load_project(root)
        text = render_compose(project, load_services(root, project, []))
    except IpabuildError as exc:
        _fail(exc)
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
        _fail(exc)
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
        _fail(exc)
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
    from ipabuild.proof.blastprobe import measure
    from ipabuild.proof.blastradius import matrix_notes, matrix_table, reach_notes, reach_table
    from ipabuild.proof.checkov import find_checkov
    from ipabuild.proof.posture import (
        OVERLAY_OF_MODE,
        container_posture,
        posture_table,
        report_html,
        report_json,
        with_network_policies,
    )
    from ipabuild.proof.scan import (
        OVERLAYS_OF_MODE,
        findings_notes,
        findings_table,
        render_overlays,
        scan,
    )
    from ipabuild.proof.targets import stack_containers
    from ipabuild.spec.load import load_project, load_services
    from ipabuild.stack.podman_api import connect

    wanted = [m.strip() for m in modes.split(",") if m.strip()]
    unknown = sorted(set(wanted) - set(OVERLAY_OF_MODE))
    try:
        if unknown:
            raise UsageError(f"unknown mode(s) {', '.join(unknown)}",
                             "use --modes with " + ", ".join(OVERLAY_OF_MODE))
        root = _root(ctx.obj["root"])
        rows = []
        blast = None
        project = load_project(root)
        if not manifests_only:
            client = connect()
            stacks = [n.strip() for n in name.split(",") if n.strip()] if name else [None]
            containers = [c for stack in stacks for c in stack_containers(client, stack)
                          if c.mode in wanted]
            if not containers:
                raise UsageError(f"nothing running in mode(s) {', '.join(wanted)}",
                                 "start a stack first: `ipabuild up` (images: `ipabuild "
                                 "images`), or `ipabuild posture --manifests-only`")
            images: dict = {}
            rows = [container_posture(c, images) for c in containers]
            specs = {s.name: s for s in load_services(root, project, [],
                                                      modes=tuple(OVERLAY_OF_MODE))}
            blast = measure(containers, specs, wanted)
        overlays = [o for m in wanted for o in OVERLAYS_OF_MODE[m]]
        rendered = render_overlays(root, overlays)
        scanned = scan(root, load_services(root, project, []), overlays, find_checkov(),
                       rendered)
        with_network_policies(blast or [], rendered)
        pss = {o.overlay: o.pss for o in scanned.overlays}
        manifests = {m: pss.get(OVERLAY_OF_MODE[m], {}) for m in wanted}
    except IpabuildError as exc:
        _fail(exc)
        return
    document = report_json(rows, wanted, manifests, scanned, blast)
    if html_file:
        Path(html_file).write_text(report_html(document))
    if json_output:
        click.echo(json.dumps(document, indent=2))
    else:
        if rows:
            print_table(posture_table(rows))
        for matrix in blast or []:
            if matrix.rows:
                print_table(matrix_table(matrix), notes=matrix_notes(matrix))
                print_table(reach_table(matrix), notes=reach_notes(matrix))
        if any(o.findings for o in scanned.overlays):
            print_table(findings_table(scanned), notes=findings_notes(scanned))
        for line in document["summary"]:  # type: ignore[attr-defined]
            click.echo(line)
        if html_file:
            click.echo(f"HTML report: {html_file}")


@main.command()
@click.argument("kind", type=click.Choice(["project", "service"]))
def schema(kind: str) -> None:
    """Print the JSON Schema of ipabuild.yaml (project) or service.yaml (service).

    Point an editor's YAML language server at it for completion and checks; the same
    files are committed under docs/schema/.
    """
    from ipabuild.spec.load import json_schema

    click.echo(json.dumps(json_schema(kind), indent=2, sort_keys=True))


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
        root = _root(ctx.obj["root"])
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
        _fail(exc)
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


if __name__ == "__main__":
    main()
