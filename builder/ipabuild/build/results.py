"""What one image's build gives: its options, its result (the ``--json`` document) and
the names and keys derived from the spec (image name, cache key, stage tag)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from ipabuild.build.render import BuildContext
from ipabuild.spec.model import Project

CACHE_LABEL = "io.ipabuild.cache-key"
STEP_LINE = re.compile(r"^(STEP \d+/\d+: .*)$", re.MULTILINE)
Status = Literal["cached", "built", "failed", "rendered"]


@dataclass(frozen=True)
class BuildOptions:
    """What the user asked ``ipabuild images`` for."""

    family: str
    tag: str
    no_cache: bool = False
    jobs: int = 2
    push: str | None = None
    tls_verify: bool | None = None
    render_only: Path | None = None


@dataclass
class ImageResult:
    """What happened to one image; the ``--json`` document is a list of these."""

    service: str
    name: str
    status: Status
    image_id: str = ""
    size: int = 0
    seconds: float = 0.0
    cache_key: str = ""
    pushed_to: str = ""
    digest: str = ""  # the manifest digest the registry holds for pushed_to
    error: str = ""
    failed_step: str = ""
    log: str = ""
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["cache_hit"] = self.status == "cached"
        return data


def image_name(project: Project, service: str, tag: str) -> str:
    return f"{project.image.prefix}/{service}:{tag}"


def cache_key(context: BuildContext, base_id: str) -> str:
    return hashlib.sha256(f"{context.content_key}\0{base_id}".encode()).hexdigest()


def stage_tag(project: Project, stage: str, key: str) -> str:
    """The content-addressed name consumers of a build stage copy from."""
    return f"{project.image.prefix}/{stage}:stage-{key[:16]}"


def failed_step(log_text: str) -> str:
    """The last buildah STEP line of a log: where the build stopped."""
    steps = STEP_LINE.findall(log_text)
    return steps[-1] if steps else "before the first build step"
