"""The build stage: render every requested service, skip what the cache holds, build the rest.

Cache key = sha256(rendered build context + base image ID). An image whose
``io.ipabuild.cache-key`` label equals the key is up to date and buildah is not run
at all. Independent images build concurrently; one failure does not hide the others.

Build stages (specs with ``mode: stage``, e.g. FreeIPA's framework built from source)
are built first, once, and also tagged ``stage-<key>``; the images that copy from a
stage name that content-addressed tag in their ``COPY --from``, so their own key
moves exactly when the stage's does, and a change to one service's templates never
rebuilds the stage.

Builds hold a host-wide lock (``locks.images_lock``): every checkout writes the same
images (``localhost/ipabuild/*``) into one podman storage and its contexts under one
state directory, so a second ``ipabuild images`` waits, saying so on stderr, instead of
rewriting a context under a running buildah or untagging what the first just built.
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ipabuild.build.bases import ResolvedBase, base_reference, resolve_base
from ipabuild.build.image import ImageMaker
from ipabuild.build.imagestore import ImageInfo, inspect_images, remove_if_dangling
from ipabuild.build.results import BuildOptions, ImageResult, image_name, stage_tag
from ipabuild.build.stages import tag_stage, with_parts, with_stages
from ipabuild.core.errors import UsageError
from ipabuild.core.locks import held, images_lock
from ipabuild.core.progress import Reporter
from ipabuild.spec.model import Project, Service


def _say_waiting(pid: int | None) -> None:
    """Tell whoever waits why (on stderr: with --json the document owns stdout)."""
    holder = f"PID {pid}" if pid else "another process"
    print(f"ipabuild: waiting for the image build of {holder} to finish "
          "(one `ipabuild images` at a time per host)", file=sys.stderr, flush=True)


class ImageBuilder:
    """Builds a set of services for one family; see module docstring for the cache."""

    def __init__(self, root: Path, project: Project, options: BuildOptions,
                 report: Reporter, state_dir: Path) -> None:
        if options.family not in project.families:
            raise UsageError(f"unknown family {options.family!r}",
                             "choose from: " + ", ".join(project.families))
        self.root = root
        self.project = project
        self.options = options
        self.report = report
        self.state_dir = state_dir

    def run(self, services: list[Service]) -> list[ImageResult]:
        """Build (or render) ``services``; returns one result per service, in order."""
        for service in services:
            if self.options.family not in service.families:
                raise UsageError(
                    f"service {service.name!r} has no {self.options.family!r} family entry",
                    f"add `families: {self.options.family}:` to its service.yaml",
                )
        stages, others = with_stages(self.root, self.project, self.options.family,
                                     with_parts(self.root, self.project, services))
        if self.options.render_only is not None:
            maker = self._maker({})
            return [maker.render_only(s, self.options.render_only) for s in stages + others]
        with held(images_lock(), "the image store", on_wait=_say_waiting):
            return self._build_all(stages, others)

    def _build_all(self, stages: list[Service], others: list[Service]) -> list[ImageResult]:
        services = stages + others
        base_refs = {base_reference(self.project, self.options.family,
                                    s.families[self.options.family].base) for s in services}
        # The images of this run as they were before it (each is built at most once).
        before = inspect_images([*sorted(base_refs), *(
            image_name(self.project, s.name, self.options.tag) for s in services)])
        maker = self._maker(before)
        bases = self._resolve_bases(services, before)
        refs: dict[str, str] = {}
        results: list[ImageResult] = []
        for stage in stages:  # serially: a stage is the heaviest build there is
            result = self._blocked(stage, refs) or maker.make(stage, self._base(bases, stage),
                                                               refs)
            if result.status != "failed":
                refs[stage.name] = stage_tag(self.project, stage.name, result.cache_key)
                tag_stage(result, refs[stage.name])
            results.append(result)
        # In two waves: the services a monolith runs, then the rest (the monolith copies
        # their images whole, by content-addressed tag as from a stage).
        parts = {p.service for s in others for p in s.runs}
        for wave in ([s for s in others if s.name in parts],
                     [s for s in others if s.name not in parts]):
            with ThreadPoolExecutor(max_workers=max(1, self.options.jobs)) as pool:
                futures = [pool.submit(lambda s: self._blocked(s, refs)
                                       or maker.make(s, self._base(bases, s), refs), s)
                           for s in wave]
                for result in (f.result() for f in futures):
                    if result.service in parts and result.status != "failed":
                        refs[result.service] = stage_tag(self.project, result.service,
                                                         result.cache_key)
                        tag_stage(result, refs[result.service])
                    results.append(result)
        results.sort(key=lambda r: [s.name for s in stages + others].index(r.service))
        # Images a build replaced, removed only once no build runs: ``podman rmi`` during
        # a parallel build pulls layers from under that build's cache lookup ("checking
        # if cached image exists from a previous build: ... layer not known", measured).
        for image_id in maker.superseded:
            remove_if_dangling(image_id)
        return results

    def _base(self, bases: dict[str, ResolvedBase], service: Service) -> ResolvedBase:
        return bases[service.families[self.options.family].base]

    def _blocked(self, service: Service, refs: dict[str, str]) -> ImageResult | None:
        """A failed result when a stage (or a service a monolith runs) that this service
        copies from did not build."""
        missing = [s for s in [*service.families[self.options.family].stages,
                               *(p.service for p in service.runs)] if s not in refs]
        if not missing:
            return None
        name = image_name(self.project, service.name, self.options.tag)
        self.report(service.name, f"FAILED: build stage {', '.join(missing)} failed")
        return ImageResult(service.name, name, "failed", failed_step=f"stage {missing[0]}",
                           error=f"not built: build stage {', '.join(missing)} failed "
                                 f"(its own result above says why)")

    def _resolve_bases(self, services: list[Service],
                       before: dict[str, ImageInfo]) -> dict[str, ResolvedBase]:
        resolved: dict[str, ResolvedBase] = {}
        for service in services:
            base = service.families[self.options.family].base
            if base in resolved:
                continue
            started = time.monotonic()
            result = resolve_base(self.project, self.options.family, base, create=True,
                                  known=before)
            if result.action != "present":
                self.report(f"base:{base}",
                            f"{result.action} {result.reference} "
                            f"in {time.monotonic() - started:.1f}s")
            resolved[base] = result
        return resolved

    def _maker(self, before: dict[str, ImageInfo]) -> ImageMaker:
        return ImageMaker(self.root, self.project, self.options, self.report, self.state_dir,
                          before)
