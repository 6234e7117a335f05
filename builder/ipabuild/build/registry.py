"""Image digests for pinned manifests: read from a registry (skopeo) or from the JSON of
``ipabuild images --push REGISTRY --json``. The only place that runs skopeo.

A digest that cannot be had (registry unreachable, image not pushed, a push document
without it) is a :class:`UsageError`: one line and exit status 2 in the CLI.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ipabuild.core.commands import run, which
from ipabuild.core.errors import UsageError

DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
SKOPEO_MESSAGE = re.compile(r'msg="(.*)"\s*$')


def default_tls_verify(registry: str) -> bool:
    """TLS is verified except for a registry on this host."""
    host = registry.split("/")[0].rsplit(":", 1)[0].strip("[]")
    return host not in LOCAL_HOSTS


def check_digest(value: str, what: str) -> str:
    if not DIGEST.match(value):
        raise UsageError(f"{what}: {value!r} is not a digest",
                         "give sha256: and 64 lower-case hex digits")
    return value


def remote_digest(reference: str, tls_verify: bool) -> str:
    """The manifest digest of ``reference`` (``host/path/name:tag``) in its registry."""
    skopeo = which("skopeo")
    if skopeo is None:
        raise UsageError("skopeo is not installed: it reads the digests from the registry",
                         "apt-get install skopeo, or use --digests-from PUSH.json")
    result = run([skopeo, "inspect", f"--tls-verify={'true' if tls_verify else 'false'}",
                  "--format", "{{.Digest}}", f"docker://{reference}"], check=False, timeout=120)
    if not result.succeeded:
        lines = (result.stderr.strip() or result.stdout.strip()).splitlines()
        last = lines[-1] if lines else "skopeo failed"
        message = SKOPEO_MESSAGE.search(last)  # time="..." level=fatal msg="..."
        reason = message.group(1).replace('\\"', '"') if message else last
        raise UsageError(f"no digest for {reference}: {reason}",
                         "push it first (`ipabuild images --push REGISTRY`) and check the "
                         "registry is reachable")
    return check_digest(result.stdout.strip(), reference)


def registry_digests(registry: str, tag: str, services: list[str],
                     tls_verify: bool | None = None) -> dict[str, str]:
    """Each service's digest of ``<registry>/<service>:<tag>``."""
    verify = default_tls_verify(registry) if tls_verify is None else tls_verify
    base = registry.rstrip("/")
    return {name: remote_digest(f"{base}/{name}:{tag}", verify) for name in services}


def push_digests(path: Path, services: list[str]) -> tuple[str, dict[str, str]]:
    """(registry, digests) from the JSON of ``ipabuild images --push REGISTRY --json``.

    Every service must have been pushed to the same registry with its digest recorded.
    """
    try:
        document = json.loads(path.read_text())
        images = {i["service"]: i for i in document["images"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{path}: not the JSON of `ipabuild images --push R --json` ({exc})",
                         "pass the file that command printed") from exc
    registries: set[str] = set()
    digests: dict[str, str] = {}
    for name in services:
        image = images.get(name) or {}
        pushed = str(image.get("pushed_to") or "")
        digest = str(image.get("digest") or "")
        if not pushed or not digest:
            raise UsageError(f"{path}: {name} was not pushed with a digest",
                             "run `ipabuild images --push REGISTRY --json` for every service")
        reference = pushed.removeprefix("docker://")
        repository = reference.rsplit(":", 1)[0] if ":" in reference.rsplit("/", 1)[-1] \
            else reference
        if not repository.endswith(f"/{name}"):
            raise UsageError(f"{path}: {name} was pushed as {pushed}, not as .../{name}",
                             "push with `ipabuild images --push REGISTRY`")
        registries.add(repository.removesuffix(f"/{name}"))
        digests[name] = check_digest(digest, f"{path}: digest of {name}")
    if len(registries) != 1:
        raise UsageError(f"{path}: the services were pushed to {len(registries)} registries "
                         f"({', '.join(sorted(registries))})", "push them all to one registry")
    return registries.pop(), digests
