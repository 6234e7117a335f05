"""Build stages (``mode: stage`` specs) in build order, before the images that copy from
them; a stage's content-addressed tag (``results.stage_tag``) is what they copy."""

from __future__ import annotations

from pathlib import Path

from ipabuild.build import buildah
from ipabuild.build.imagestore import inspect_image
from ipabuild.build.results import ImageResult
from ipabuild.core.errors import ConfigError
from ipabuild.spec.load import load_services
from ipabuild.spec.model import Project, Service
from ipabuild.spec.ordering import topological


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


def with_parts(root: Path, project: Project, services: list[Service]) -> list[Service]:
    """``services`` plus every service a monolith among them runs (``runs``), each of
    those before the rest: a monolith copies their built images whole."""
    by_name = {s.name: s for s in services}
    parts: list[Service] = []
    for service in services:
        for part in service.runs:
            found = by_name.get(part.service) or load_services(root, project, [part.service])[0]
            if found.mode != "split":
                raise ConfigError(root / "services" / service.name / "service.yaml",
                                  f"runs names {part.service!r}, whose mode is "
                                  f"{found.mode!r}", None, "a monolith runs split services")
            if found not in parts:
                parts.append(found)
    return parts + [s for s in services if s not in parts]


def tag_stage(result: ImageResult, reference: str) -> None:
    """Give a built stage its content-addressed tag (when it has not got it yet)."""
    if inspect_image(reference) is None:
        buildah.tag(result.name, reference)
