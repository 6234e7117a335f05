"""One service's image: render its context, decide from the cache key whether to build,
build it with buildah, and push it where asked.

A build stage is never pushed: it stays local, only what copies from it is pushed. An
image a build replaced is only recorded (``superseded``), for the caller to remove once
no build runs any more (see ``images.ImageBuilder``).
"""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from ipabuild.build import buildah
from ipabuild.build.bases import ResolvedBase, base_reference
from ipabuild.build.imagestore import ImageInfo, inspect_image
from ipabuild.build.push import push_image
from ipabuild.build.render import BuildContext, render_service
from ipabuild.build.results import (
    CACHE_LABEL,
    BuildOptions,
    ImageResult,
    cache_key,
    failed_step,
    image_name,
    stage_tag,
)
from ipabuild.build.wheels import fetch_wheel
from ipabuild.core.errors import IpabuildError
from ipabuild.core.progress import Reporter
from ipabuild.spec.model import Project, Service, Wheel


def git_revision(root: Path) -> str:
    """The checkout's commit, for the OCI revision label ("unknown" outside git)."""
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"],
                             capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return "unknown"
    return out.stdout.strip() or "unknown"


class ImageMaker:
    """Makes the images of one ``ipabuild images`` run, one service at a time (thread-safe:
    each call works on its own service; ``superseded`` only grows)."""

    def __init__(self, root: Path, project: Project, options: BuildOptions, report: Reporter,
                 state_dir: Path, before: dict[str, ImageInfo]) -> None:
        self.root = root
        self.project = project
        self.options = options
        self.report = report
        self.state_dir = state_dir
        self.revision = git_revision(root)
        self.before = before  # the run's images as they were before it
        self.superseded: list[str] = []  # image IDs a build replaced

    def _fetch_wheel(self, wheel: Wheel) -> Path:
        return fetch_wheel(wheel, self.state_dir / "wheels")

    def render_only(self, service: Service, out: Path) -> ImageResult:
        base = service.families[self.options.family].base
        reference = base_reference(self.project, self.options.family, base)
        context = render_service(self.root, self.project, service, self.options.family, reference,
                                 wheel_source=self._fetch_wheel)
        target = out / service.name
        context.write(target)
        self.report(service.name, f"rendered to {target}")
        return ImageResult(service.name, image_name(self.project, service.name, self.options.tag),
                           "rendered", cache_key=context.content_key, notes=[str(target)])

    def make(self, service: Service, base: ResolvedBase, refs: dict[str, str]) -> ImageResult:
        started = time.monotonic()
        name = image_name(self.project, service.name, self.options.tag)
        try:
            context = render_service(self.root, self.project, service, self.options.family,
                                     base.reference, stage_refs=refs,
                                     wheel_source=self._fetch_wheel)
            key = cache_key(context, base.image_id)
            existing = self.before.get(name)
            if (existing is not None and not self.options.no_cache
                    and existing.labels.get(CACHE_LABEL) == key):
                result = ImageResult(service.name, name, "cached", existing.image_id,
                                     existing.size, cache_key=key)
                self.report(service.name, "cached (no build needed)")
            else:
                result = self._build(service, context, name, key)
                if existing is not None and result.image_id not in ("", existing.image_id):
                    old_key = existing.labels.get(CACHE_LABEL, "")
                    if old_key:  # a stage's (or a monolith's part's) old content tag
                        buildah.untag(stage_tag(self.project, service.name, old_key))
                    self.superseded.append(existing.image_id)
            # A build stage is never run: it stays local, only what copies it is pushed.
            if result.status != "failed" and self.options.push and service.mode != "stage":
                push_image(result, self.options.push, self.options.tag,
                           self.options.tls_verify, self.report)
        except IpabuildError as exc:
            result = ImageResult(service.name, name, "failed", error=exc.user_message())
            self.report(service.name, f"FAILED: {exc.user_message().splitlines()[0]}")
        result.seconds = round(time.monotonic() - started, 2)
        return result

    def _build(self, service: Service, context: BuildContext, name: str, key: str) -> ImageResult:
        context_dir = self.state_dir / "contexts" / self.options.family / service.name
        log_path = self.state_dir / "logs" / f"{service.name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        context.write(context_dir)
        self.report(service.name, "building")
        labels = {
            "org.opencontainers.image.version": self.options.tag,
            "org.opencontainers.image.revision": self.revision,
            "org.opencontainers.image.created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "org.opencontainers.image.source": self.project.source,
            CACHE_LABEL: key,
        }
        outcome = buildah.build(context_dir, name, labels, no_cache=self.options.no_cache,
                                log_path=log_path)
        if not outcome.succeeded:
            step = failed_step(outcome.stdout)
            self.report(service.name, f"FAILED at {step}")
            return ImageResult(service.name, name, "failed", cache_key=key,
                               error=outcome.tail(20), failed_step=step, log=str(log_path))
        info = inspect_image(name)
        self.report(service.name, "built")
        return ImageResult(service.name, name, "built", info.image_id if info else "",
                           info.size if info else 0, cache_key=key, log=str(log_path))

