"""Base images: bootstrapped locally with mmdebstrap, or pulled from a registry.

This host has no registry, so the Debian family's bases are made from Debian's
mirror. The image name carries a hash of the bootstrap settings, so changing them
makes a new base (and, through the cache key, rebuilds what sits on it).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ipabuild.build import buildah
from ipabuild.build.imagestore import ImageInfo, inspect_image
from ipabuild.core.commands import run
from ipabuild.core.errors import RegistryUnavailable
from ipabuild.spec.model import Base, Bootstrap, Project

BaseAction = Literal["present", "bootstrapped", "pulled", "unresolved"]


@dataclass(frozen=True)
class ResolvedBase:
    """A base image as the build sees it: a reference for FROM plus its image ID."""

    family: str
    name: str
    reference: str
    image_id: str
    action: BaseAction


def bootstrap_hash(bootstrap: Bootstrap) -> str:
    """Short hash of the bootstrap command: part of the base image's tag, so a change of
    settings or of how ipabuild bootstraps makes a new base."""
    text = json.dumps(mmdebstrap_argv(bootstrap, Path("-")))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def base_reference(project: Project, family: str, name: str) -> str:
    """The image reference a Containerfile's FROM uses for this base."""
    base = project.families[family].bases[name]
    if base.from_image is not None:
        return base.from_image
    assert base.bootstrap is not None
    return f"{project.image.prefix}/base-{family}-{name}:{bootstrap_hash(base.bootstrap)}"


def mmdebstrap_argv(bootstrap: Bootstrap, target: Path) -> list[str]:
    """The mmdebstrap command that writes the base's root filesystem to ``target``."""
    argv = ["mmdebstrap", f"--variant={bootstrap.variant}", "--quiet"]
    if bootstrap.include:
        argv.append("--include=" + ",".join(bootstrap.include))
    # Image contract: no setuid/setgid file even in the base layer.
    argv.append('--customize-hook=find "$1" -xdev -perm /6000 -type f -exec chmod ug-s {} +')
    for pattern in bootstrap.exclude_paths:
        argv.append(f"--dpkgopt=path-exclude={pattern}")
    mirrors = [f"deb {bootstrap.mirror} {suite} main" for suite in bootstrap.extra_suites]
    argv += [bootstrap.suite, str(target), f"deb {bootstrap.mirror} {bootstrap.suite} main"]
    return argv + mirrors


def resolve_base(project: Project, family: str, name: str, *, create: bool,
                 known: Mapping[str, ImageInfo] | None = None) -> ResolvedBase:
    """Find the base locally; bootstrap or pull it when ``create`` and it is missing.
    ``known``: images already inspected (``inspect_images``), absent ones included."""
    base: Base = project.families[family].bases[name]
    reference = base_reference(project, family, name)
    info = known.get(reference) if known is not None else inspect_image(reference)
    if info is not None:
        return ResolvedBase(family, name, reference, info.image_id, "present")
    if not create:
        return ResolvedBase(family, name, reference, "", "unresolved")
    if base.from_image is not None:
        result = buildah.pull(base.from_image)
        if not result.succeeded:
            raise RegistryUnavailable(base.from_image, family, result.tail(3))
        info = inspect_image(reference)
        return ResolvedBase(family, name, reference, info.image_id if info else "", "pulled")
    assert base.bootstrap is not None
    with tempfile.TemporaryDirectory(prefix="ipabuild-base-", dir="/var/tmp") as tmp:
        tarball = Path(tmp) / f"{name}.tar"
        run(mmdebstrap_argv(base.bootstrap, tarball), step=f"mmdebstrap {name}")
        image_id = buildah.import_rootfs(tarball, reference, {
            "io.ipabuild.base": name,
            "io.ipabuild.family": family,
            "io.ipabuild.bootstrap": bootstrap_hash(base.bootstrap),
        })
    return ResolvedBase(family, name, reference, image_id, "bootstrapped")
