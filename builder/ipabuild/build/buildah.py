"""The buildah adapter: the only module that knows buildah's command line.

Why an adapter: Kolla's lesson is that engine branches leak everywhere unless one
module owns the engine. Everything here returns small dataclasses, never raw JSON.
"""

from __future__ import annotations

from pathlib import Path

from ipabuild.build.imagestore import inspect_image
from ipabuild.core.commands import CommandResult, run

BUILDAH = "buildah"


def build(
    context_dir: Path,
    name: str,
    labels: dict[str, str],
    *,
    no_cache: bool,
    log_path: Path,
) -> CommandResult:
    """``buildah bud`` the context; output streams into ``log_path``.

    Docker format keeps HEALTHCHECK (OCI images have no such field); ``--layers`` lets
    a changed template rebuild only the steps after the package installation.
    """
    argv = [
        BUILDAH, "bud", "--format", "docker", "--layers", "--pull=false",
        "-f", str(context_dir / "Containerfile"), "-t", name,
    ]
    for key, value in sorted(labels.items()):
        argv += ["--label", f"{key}={value}"]
    if no_cache:
        argv.append("--no-cache")
    argv.append(str(context_dir))
    return run(argv, check=False, log_path=log_path)


def import_rootfs(tarball: Path, name: str, labels: dict[str, str]) -> str:
    """Turn a root filesystem tarball into the image ``name``; returns its ID."""
    container = run([BUILDAH, "from", "scratch"], step="buildah from scratch").stdout.strip()
    try:
        run([BUILDAH, "add", container, str(tarball), "/"], step=f"import {tarball.name}")
        config = [BUILDAH, "config", "--cmd", "/bin/bash"]
        for key, value in sorted(labels.items()):
            config += ["--label", f"{key}={value}"]
        run([*config, container], step="buildah config")
        run([BUILDAH, "commit", "--rm", container, name], step=f"commit {name}")
    except Exception:
        run([BUILDAH, "rm", container], check=False)
        raise
    info = inspect_image(name)
    return info.image_id if info else ""


def pull(reference: str) -> CommandResult:
    """Try to pull ``reference``; the caller decides what a failure means."""
    return run([BUILDAH, "pull", "--quiet", reference], check=False)


def push(name: str, destination: str, *, tls_verify: bool,
         digest_file: Path | None = None) -> CommandResult:
    """Push the local image ``name`` to ``destination`` (``docker://host/repo:tag``);
    with ``digest_file`` buildah writes the pushed manifest's digest there."""
    argv = [BUILDAH, "push", f"--tls-verify={'true' if tls_verify else 'false'}"]
    if digest_file is not None:
        argv.append(f"--digestfile={digest_file}")
    return run([*argv, name, destination], check=False)


def tag(name: str, reference: str) -> None:
    """Add the name ``reference`` to the local image ``name``."""
    run([BUILDAH, "tag", name, reference], step=f"tag {reference}")


def untag(reference: str) -> None:
    """Remove the name ``reference`` (the image stays while other names or users hold it)."""
    run([BUILDAH, "rmi", reference], check=False)
