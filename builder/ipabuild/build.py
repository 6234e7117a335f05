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

import hashlib
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from ipabuild import buildah
from ipabuild.bases import ResolvedBase, base_reference, resolve_base
from ipabuild.errors import ConfigError, IpabuildError, UsageError
from ipabuild.imagestore import ImageInfo, inspect_image, inspect_images, remove_if_dangling
from ipabuild.locks import held, images_lock
from ipabuild.ordering import topological
from ipabuild.registry import default_tls_verify
from ipabuild.render import BuildContext, render_service
from ipabuild.spec import Project, Service, Wheel, load_services
from ipabuild.wheels import fetch_wheel

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


Reporter = Callable[[str, str], None]


def image_name(project: Project, service: str, tag: str) -> str:
    return f"{project.image.prefix}/{service}:{tag}"


def cache_key(context: BuildContext, base_id: str) -> str:
    return hashlib.sha256(f"{context.content_key}\0{base_id}".encode()).hexdigest()


def stage_tag(project: Project, stage: str, key: str) -> str:
    """The content-addressed name consumers of a build stage copy from."""
    return f"{project.image.prefix}/{stage}:stage-{key[:16]}"


def with_stages(root: Path, project: Project, family: str,
                services: list[Service]) -> tuple[list[Service], list[Service]]:
    """(build stages in build order, the other services): every stage the services copy
    from, transitively, each before the stages and services that need it."""
    by_name = {s.name: s for s in services}

    def stages_of(service: Service) -> list[Service]:
        wanted = service.families.get(family)
        found = []
        for stage_name in wanted.stages if wanted else []:
            stage = by_name.get(stage_name) or load_services(root, project, [stage_name])[0]
            if stage.mode != "stage":
                raise ConfigError(root / "services" / service.name / "service.yaml",
                                  f"copy_from names {stage_name!r}, whose mode is "
                                  f"{stage.mode!r}", None,
                                  f"set `mode: stage` in services/{stage_name}/service.yaml")
            by_name[stage_name] = stage
            found.append(stage)
        return found

    ordered = topological(services, stages_of, "build stages copy from each other in a cycle",
                          "fix copy_from in the service specs")
    return ([s for s in ordered if s.mode == "stage"],
            [s for s in ordered if s.mode != "stage"])


def git_revision(root: Path) -> str:
    """The checkout's commit, for the OCI revision label ("unknown" outside git)."""
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"],
                             capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return "unknown"
    return out.stdout.strip() or "unknown"


def _say_waiting(pid: int | None) -> None:
    """Tell whoever waits why (on stderr: with --json the document owns stdout)."""
    holder = f"PID {pid}" if pid else "another process"
    print(f"ipabuild: waiting for the image build of {holder} to finish "
          "(one `ipabuild images` at a time per host)", file=sys.stderr, flush=True)


def failed_step(log_text: str) -> str:
    """The last buildah STEP line of a log: where the build stopped."""
    steps = STEP_LINE.findall(log_text)
    return steps[-1] if steps else "before the first build step"


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
        self.revision = git_revision(root)
        # Images a build replaced, removed only once no build runs: ``podman rmi`` during
        # a parallel build pulls layers from under that build's cache lookup ("checking
        # if cached image exists from a previous build: ... layer not known", measured).
        self._superseded: list[str] = []
        # The images of this run as they were before it (each is built at most once).
        self._before: dict[str, ImageInfo] = {}

    def run(self, services: list[Service]) -> list[ImageResult]:
        """Build (or render) ``services``; returns one result per service, in order."""
        for service in services:
            if self.options.family not in service.families:
                raise UsageError(
                    f"service {service.name!r} has no {self.options.family!r} family entry",
                    f"add `families: {self.options.family}:` to its service.yaml",
                )
        stages, others = with_stages(self.root, self.project, self.options.family, services)
        if self.options.render_only is not None:
            return [self._render_only(s, self.options.render_only) for s in stages + others]
        with held(images_lock(), "the image store", on_wait=_say_waiting):
            return self._build_all(stages, others)

    def _build_all(self, stages: list[Service], others: list[Service]) -> list[ImageResult]:
        services = stages + others
        base_refs = {base_reference(self.project, self.options.family,
                                    s.families[self.options.family].base) for s in services}
        self._before = inspect_images([*sorted(base_refs), *(
            image_name(self.project, s.name, self.options.tag) for s in services)])
        bases = self._resolve_bases(services)
        refs: dict[str, str] = {}
        results: list[ImageResult] = []
        for stage in stages:  # serially: a stage is the heaviest build there is
            result = self._blocked(stage, refs) or self._one(stage, self._base(bases, stage),
                                                               refs)
            if result.status != "failed":
                refs[stage.name] = stage_tag(self.project, stage.name, result.cache_key)
                self._tag_stage(result, refs[stage.name])
            results.append(result)
        with ThreadPoolExecutor(max_workers=max(1, self.options.jobs)) as pool:
            futures = [pool.submit(lambda s: self._blocked(s, refs)
                                   or self._one(s, self._base(bases, s), refs), s)
                       for s in others]
            results += [f.result() for f in futures]
        for image_id in self._superseded:
            remove_if_dangling(image_id)
        return results

    def _base(self, bases: dict[str, ResolvedBase], service: Service) -> ResolvedBase:
        return bases[service.families[self.options.family].base]

    def _blocked(self, service: Service, refs: dict[str, str]) -> ImageResult | None:
        """A failed result when a stage this service copies from did not build."""
        missing = [s for s in service.families[self.options.family].stages if s not in refs]
        if not missing:
            return None
        name = image_name(self.project, service.name, self.options.tag)
        self.report(service.name, f"FAILED: build stage {', '.join(missing)} failed")
        return ImageResult(service.name, name, "failed", failed_step=f"stage {missing[0]}",
                           error=f"not built: build stage {', '.join(missing)} failed "
                                 f"(its own result above says why)")

    def _tag_stage(self, result: ImageResult, reference: str) -> None:
        """Give a stage its content-addressed tag (and drop the superseded one)."""
        if inspect_image(reference) is None:
            buildah.tag(result.name, reference)

    def _fetch_wheel(self, wheel: Wheel) -> Path:
        return fetch_wheel(wheel, self.state_dir / "wheels")

    def _render_only(self, service: Service, out: Path) -> ImageResult:
        base = service.families[self.options.family].base
        reference = base_reference(self.project, self.options.family, base)
        context = render_service(self.root, self.project, service, self.options.family, reference,
                                 wheel_source=self._fetch_wheel)
        target = out / service.name
        context.write(target)
        self.report(service.name, f"rendered to {target}")
        return ImageResult(service.name, image_name(self.project, service.name, self.options.tag),
                           "rendered", cache_key=context.content_key, notes=[str(target)])

    def _resolve_bases(self, services: list[Service]) -> dict[str, ResolvedBase]:
        resolved: dict[str, ResolvedBase] = {}
        for service in services:
            base = service.families[self.options.family].base
            if base in resolved:
                continue
            started = time.monotonic()
            result = resolve_base(self.project, self.options.family, base, create=True,
                                  known=self._before)
            if result.action != "present":
                self.report(f"base:{base}",
                            f"{result.action} {result.reference} "
                            f"in {time.monotonic() - started:.1f}s")
            resolved[base] = result
        return resolved

    def _one(self, service: Service, base: ResolvedBase, refs: dict[str, str]) -> ImageResult:
        started = time.monotonic()
        name = image_name(self.project, service.name, self.options.tag)
        try:
            context = render_service(self.root, self.project, service, self.options.family,
                                     base.reference, stage_refs=refs,
                                     wheel_source=self._fetch_wheel)
            key = cache_key(context, base.image_id)
            existing = self._before.get(name)
            if (existing is not None and not self.options.no_cache
                    and existing.labels.get(CACHE_LABEL) == key):
                result = ImageResult(service.name, name, "cached", existing.image_id,
                                     existing.size, cache_key=key)
                self.report(service.name, "cached (no build needed)")
            else:
                result = self._build(service, context, name, key)
                if existing is not None and result.image_id not in ("", existing.image_id):
                    old_key = existing.labels.get(CACHE_LABEL, "")
                    if service.mode == "stage" and old_key:
                        buildah.untag(stage_tag(self.project, service.name, old_key))
                    self._superseded.append(existing.image_id)
            # A build stage is never run: it stays local, only what copies it is pushed.
            if result.status != "failed" and self.options.push and service.mode != "stage":
                self._push(result)
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

    def _push(self, result: ImageResult) -> None:
        registry = (self.options.push or "").rstrip("/")
        destination = f"docker://{registry}/{result.service}:{self.options.tag}"
        tls_verify = self.options.tls_verify
        if tls_verify is None:
            tls_verify = default_tls_verify(registry)
        self.report(result.service, f"pushing to {destination}")
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
            self.report(result.service, f"push FAILED: {outcome.tail(1)}")
