"""Turn a service spec into a build context: a Containerfile plus the files it copies.

One generic Containerfile template serves every service; what differs between
services is data in their ``service.yaml``. Jinja2 runs sandboxed with
``StrictUndefined`` so that a typo fails loudly instead of rendering as "".
"""

from __future__ import annotations

import hashlib
import json
import shutil
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from ipabuild import TEMPLATES
from ipabuild.core.errors import ConfigError, UsageError
from ipabuild.core.textsource import TemplateLoader
from ipabuild.spec.load import load_common_files, load_service, service_names, spec_path
from ipabuild.spec.model import (
    COMMON_DIR,
    MonolithPart,
    PackageOverride,
    Project,
    Service,
    Wheel,
)
from ipabuild.spec.routes import resolve_routes

WheelSource = Callable[[Wheel], Path]



def customize(packages: list[str], change: PackageOverride | None) -> list[str]:
    """Apply an ``override``/``append``/``remove`` change to a package list (Kolla's way)."""
    if change is None:
        return list(packages)
    result = list(change.override) if change.override is not None else list(packages)
    result += [p for p in change.append if p not in result]
    return [p for p in result if p not in change.remove]


@dataclass
class BuildContext:
    """A rendered build context, in memory until written."""

    service: str
    family: str
    base: str
    containerfile: str
    files: dict[str, tuple[bytes, int]] = field(default_factory=dict)

    @property
    def content_key(self) -> str:
        """Hash of everything in the context (paths, modes, bytes): half of the cache key."""
        digest = hashlib.sha256()
        digest.update(b"Containerfile\0" + self.containerfile.encode())
        for path in sorted(self.files):
            data, mode = self.files[path]
            digest.update(f"\0{path}\0{mode:o}\0".encode() + data)
        return digest.hexdigest()

    def write(self, directory: Path) -> Path:
        """Write the context to ``directory`` (replacing it); returns the Containerfile."""
        if directory.exists():
            shutil.rmtree(directory)
        rootfs = directory / "rootfs"
        rootfs.mkdir(parents=True)
        for rel, (data, mode) in sorted(self.files.items()):
            target = rootfs / rel.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            target.chmod(mode)
        containerfile = directory / "Containerfile"
        containerfile.write_text(self.containerfile)
        return containerfile


def _environment(search_path: list[Path]) -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        # Reads each template as strict UTF-8 text with size and control-character limits:
        # a bad file is a ConfigError naming it, not a UnicodeDecodeError from Jinja2.
        loader=TemplateLoader([str(p) for p in search_path]),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["argv"] = json.dumps
    return env


def _template_line(exc: BaseException, template: str) -> int | None:
    """Line in ``template`` where Jinja raised, from the rewritten traceback."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename.endswith(template):
            return frame.lineno
    return getattr(exc, "lineno", None)


def _render(env: SandboxedEnvironment, name: str, path: Path, context: dict[str, Any]) -> str:
    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(path, f"template syntax error: {exc.message}", exc.lineno,
                          "correct the Jinja2 syntax") from exc
    except jinja2.UndefinedError as exc:
        raise ConfigError(path, f"undefined template variable: {exc.message}",
                          _template_line(exc, name),
                          "use one of project, service, family, realm, domain, suffix, "
                          "server, routes") from exc
    except jinja2.TemplateNotFound as exc:
        raise ConfigError(path, f"template {exc.name!r} not found", None,
                          "create it next to service.yaml") from exc
    except jinja2.TemplateError as exc:  # e.g. the sandbox refusing an unsafe attribute
        raise ConfigError(path, f"template error: {exc}", _template_line(exc, name),
                          "correct the template") from exc
    except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError,
            RecursionError) as exc:
        raise ConfigError(path, f"template failed to render: {type(exc).__name__}: {exc}",
                          _template_line(exc, name), "correct the template") from exc


def template_context(project: Project, service: Service, family_name: str) -> dict[str, Any]:
    """The variables every service file and the Containerfile may use."""
    return {
        "project": project,
        "service": service,
        "family": family_name,
        "realm": project.realm,
        "domain": project.domain,
        "suffix": project.suffix,
        "server": project.server,
        "routes": [],
    }


def image_environment(project: Project, service: Service) -> dict[str, str]:
    """The ENV of ``service``'s image: the realm's names, then its spec's environment.
    A monolith gives each service it runs the same (``monolith_config``)."""
    return {"IPA_REALM": project.realm, "IPA_DOMAIN": project.domain,
            "IPA_SUFFIX": project.suffix, "IPA_SERVER": project.server,
            **dict(sorted(service.environment.items()))}


MONOLITH_CONFIG = "/usr/share/ipabuild/monolith.json"


def part_root(service: str) -> str:
    """Where a monolith holds a service's image tree."""
    return f"/srv/{service}"


def monolith_config(project: Project, parts: list[tuple[MonolithPart, Service]]) -> dict:
    """What a monolith's supervisor needs of each service it runs, in the spec's order:
    the service's own spec as its split container gets it (entrypoint, environment,
    volumes, secrets, health), plus the user upstream runs it as."""
    return {"services": [{
        "name": service.name,
        "root": part_root(service.name),
        "user": part.user,
        "upstream": part.upstream,
        "command": [*service.entrypoint, *service.command],
        "init": service.init.command if service.init else [],
        "environment": image_environment(project, service),
        "healthcheck": service.healthcheck.command if service.healthcheck else [],
        "start_period": service.healthcheck.start_period if service.healthcheck else 0,
        "depends_on": dict(service.depends_on),
        "volumes": [{"name": v.name, "path": v.path, "ephemeral": v.ephemeral}
                    for v in service.volumes],
        "shared_volumes": [{"service": v.service, "volume": v.volume, "path": v.path}
                           for v in service.shared_volumes],
        "tmpfs": list(service.tmpfs),
        "secrets": [{"name": s.name, "path": s.path} for s in service.secrets],
    } for part, service in parts]}


def stage_reference(project: Project, stage: str, tag: str | None = None) -> str:
    """The plain name of a build stage's image (``<prefix>/<stage>:<tag>``)."""
    return f"{project.image.prefix}/{stage}:{tag or project.image.tag}"


def render_service(
    root: Path, project: Project, service: Service, family_name: str, base_ref: str,
    stage_refs: Mapping[str, str] | None = None, wheel_source: WheelSource | None = None,
) -> BuildContext:
    """Render ``service`` for ``family_name`` on top of the image ``base_ref``.

    ``stage_refs`` maps each build stage the spec copies from to the image reference
    its ``COPY --from`` uses (the builder passes a content-addressed tag, so a changed
    stage changes this context's key); ``wheel_source`` yields each pinned wheel's file
    (without one, the context lists no wheel files: enough for golden tests).
    """
    wanted = service.families.get(family_name)
    if wanted is None:
        raise UsageError(
            f"service {service.name!r} declares no packages for family {family_name!r}",
            f"add a `families: {family_name}:` entry to services/{service.name}/service.yaml",
        )
    family = project.families[family_name]
    service_dir = root / "services" / service.name
    common_dir = root / "services" / COMMON_DIR
    env = _environment([service_dir, common_dir, TEMPLATES])
    context = template_context(project, service, family_name)
    if service.serves_name:  # the proxy's configuration needs its routes' container ports
        every = [load_service(root, name, project) for name in service_names(root)]
        context["routes"] = resolve_routes(service, every, spec_path(root, service.name))

    files: dict[str, tuple[bytes, int]] = {}
    for entry in load_common_files(root) + list(service.files):
        source = service_dir / entry.src
        if not source.is_file():
            source = common_dir / entry.src
        if entry.src.endswith(".j2"):
            data = _render(env, entry.src, source, context).encode()
        else:
            data = source.read_bytes()
        files[entry.dest] = (data, int(entry.mode, 8))
    if wheel_source is not None:
        for wheel in wanted.wheels:
            wheel_file = wheel_source(wheel)
            files[f"{wheel.dest.rstrip('/')}/{wheel_file.name}"] = (wheel_file.read_bytes(),
                                                                    0o644)
    refs = dict(stage_refs or {})
    copies = [{"ref": refs.get(copy.stage) or stage_reference(project, copy.stage),
               "src": copy.src, "dest": copy.dest} for copy in wanted.copy_from]
    if service.runs:
        parts = [(part, load_service(root, part.service, project)) for part in service.runs]
        copies += [{"ref": refs.get(part.service) or stage_reference(project, part.service),
                    "src": "/", "dest": part_root(part.service)} for part in service.runs]
        files[MONOLITH_CONFIG] = (json.dumps(monolith_config(project, parts), indent=1)
                                  .encode() + b"\n", 0o644)

    packages = customize(
        family.common_packages + wanted.packages,
        project.overrides.get(service.name, {}).get(family_name),
    )
    containerfile = _render(env, "Containerfile.j2", TEMPLATES / "Containerfile.j2", {
        **context,
        "family_name": family_name,
        "base_ref": base_ref,
        "cache_id": f"{family_name}-{wanted.base}",
        "package_manager": family.package_manager,
        "packages": packages,
        "prune": wanted.prune,
        "package_steps": wanted.build_steps,
        "stage_copies": copies,
        "build_steps": service.build_steps,
        "writable": sorted({*service.writable, *(v.path for v in service.volumes)}),
        "image_title": f"{project.image.prefix}/{service.name}",
        "image_env": image_environment(project, service),
    })
    return BuildContext(service.name, family_name, wanted.base, containerfile, files)
