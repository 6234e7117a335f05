"""Push one built image to a registry with buildah, recording the manifest digest."""

from __future__ import annotations

import tempfile
from pathlib import Path

from ipabuild.build import buildah
from ipabuild.build.registry import default_tls_verify
from ipabuild.build.results import ImageResult
from ipabuild.core.progress import Reporter


def push_image(result: ImageResult, registry_path: str, tag: str, tls_verify: bool | None,
               report: Reporter) -> None:
    """Push ``result``'s image as ``<registry_path>/<service>:<tag>``; a failure marks the
    result failed at step "push" (TLS is verified except for a local registry unless
    ``tls_verify`` says otherwise)."""
    registry = registry_path.rstrip("/")
    destination = f"docker://{registry}/{result.service}:{tag}"
    if tls_verify is None:
        tls_verify = default_tls_verify(registry)
    report(result.service, f"pushing to {destination}")
    with tempfile.TemporaryDirectory() as tmp:
        digest_file = Path(tmp) / "digest"
        outcome = buildah.push(result.name, destination, tls_verify=tls_verify,
                               digest_file=digest_file)
        digest = digest_file.read_text().strip() if digest_file.exists() else ""
    if outcome.succeeded:
        result.pushed_to = destination
        result.digest = digest
    else:
        result.status = "failed"
        result.failed_step = "push"
        result.error = outcome.tail(10)
        report(result.service, f"push FAILED: {outcome.tail(1)}")
