"""Read the spec files into the model: ``ipabuild.yaml``, every
``services/<name>/service.yaml`` and ``services/common/files.yaml``.

Every validation error becomes one :class:`ConfigError` naming file, line and fix; a
reference that the model alone cannot check (a family, a base, a stage, a file) is
checked here against the project and the tree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ipabuild.core.errors import ConfigError, UsageError
from ipabuild.core.textsource import is_file
from ipabuild.core.yamlsource import YamlDocument, load_yaml
from ipabuild.spec.model import (
    COMMON_DIR,
    PROJECT_FILE,
    SERVICE_FILE,
    CommonFiles,
    FileEntry,
    Project,
    Service,
)

ModelT = TypeVar("ModelT", bound=BaseModel)


def validate_document(model: type[ModelT], doc: YamlDocument,
                      extra: dict[str, Any]) -> ModelT:
    """``doc`` (plus ``extra`` keys) as ``model``; the first error as one ConfigError
    naming file, line and fix."""
    try:
        return model.model_validate({**doc.data, **extra})
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        shown = ".".join(str(part) for part in loc) or "(top level)"
        kind = first["type"]
        if kind == "extra_forbidden":
            fix = f"remove or rename `{shown}`; allowed keys are listed in docs/spec.md"
            problem = f"unknown key `{shown}`"
        elif kind == "missing":
            fix = f"add `{shown}`"
            problem = f"missing key `{shown}`"
        else:
            fix = "see docs/spec.md for the expected type"
            problem = f"`{shown}`: {first['msg']}"
        raise ConfigError(doc.path, problem, doc.line_of(loc), fix) from exc


def load_project(root: Path) -> Project:
    """Read and validate ``<root>/ipabuild.yaml``."""
    doc = load_yaml(root / PROJECT_FILE)
    project = validate_document(Project, doc, {})
    if project.default_family not in project.families:
        raise ConfigError(
            doc.path, f"default_family {project.default_family!r} is not under `families`",
            doc.line_of(("default_family",)), "name one of: " + ", ".join(project.families),
        )
    return project


def spec_path(root: Path, name: str) -> Path:
    """Where the spec of service ``name`` lives."""
    return root / "services" / name / SERVICE_FILE


def load_service(root: Path, name: str, project: Project) -> Service:
    """Read and validate ``services/<name>/service.yaml`` against the project."""
    path = spec_path(root, name)
    doc = load_yaml(path)
    service = validate_document(Service, doc, {"name": name})
    for family_name, wanted in service.families.items():
        family = project.families.get(family_name)
        if family is None:
            raise ConfigError(
                path, f"unknown family {family_name!r}", doc.line_of(("families", family_name)),
                "use a family defined in ipabuild.yaml: " + ", ".join(project.families),
            )
        if wanted.base not in family.bases:
            raise ConfigError(
                path, f"family {family_name!r} has no base {wanted.base!r}",
                doc.line_of(("families", family_name, "base")),
                "use one of: " + ", ".join(family.bases),
            )
        for index, copy in enumerate(wanted.copy_from):
            stage_spec = root / "services" / copy.stage / SERVICE_FILE
            if copy.stage == name or not is_file(stage_spec):
                raise ConfigError(
                    path, f"copy_from names {copy.stage!r}, which is not another spec",
                    doc.line_of(("families", family_name, "copy_from", index, "stage")),
                    "name a services/<stage>/service.yaml with `mode: stage`",
                )
    shared = root / "services" / COMMON_DIR
    for index, entry in enumerate(service.files):
        # A service may use a shared file from services/common (render looks there too).
        if not any(is_file(d / entry.src) for d in (path.parent, shared)):
            raise ConfigError(
                path, f"file {entry.src!r} does not exist in services/{name}/ or services/common/",
                doc.line_of(("files", index, "src")), "create it or correct `src`",
            )
    return service


def load_common_files(root: Path) -> list[FileEntry]:
    """The shared files of every image; none when services/common/files.yaml is absent."""
    path = root / "services" / COMMON_DIR / "files.yaml"
    if not path.is_file():
        return []
    doc = load_yaml(path)
    common = validate_document(CommonFiles, doc, {})
    for index, entry in enumerate(common.files):
        if not is_file(path.parent / entry.src):
            raise ConfigError(path, f"file {entry.src!r} does not exist in services/common/",
                              doc.line_of(("files", index, "src")), "create it or correct `src`")
    return common.files


def service_names(root: Path) -> list[str]:
    """Every service directory that holds a service.yaml, sorted."""
    base = root / "services"
    return sorted(p.parent.name for p in base.glob(f"*/{SERVICE_FILE}"))


def load_services(root: Path, project: Project, wanted: list[str] | None = None,
                  modes: tuple[str, ...] = ("split",)) -> list[Service]:
    """Load the named services; with ``wanted`` empty, every service of ``modes`` (a
    monolithic image is built and run only when asked for by name)."""
    known = service_names(root)
    names = wanted or known
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UsageError(
            f"unknown service {', '.join(unknown)}", "choose from: " + ", ".join(known)
        )
    loaded = [load_service(root, name, project) for name in names]
    return loaded if wanted else [s for s in loaded if s.mode in modes]


def find_root(start: Path) -> Path:
    """The project root: the nearest directory upwards holding ``ipabuild.yaml``."""
    for candidate in [start, *start.parents]:
        if (candidate / PROJECT_FILE).is_file():
            return candidate
    raise UsageError(
        f"no {PROJECT_FILE} in {start} or any parent directory",
        "run ipabuild inside a project checkout or pass --root DIR",
    )


def json_schema(kind: str) -> dict[str, Any]:
    """JSON Schema of ``ipabuild.yaml`` ("project") or ``service.yaml`` ("service")."""
    model: type[BaseModel] = Project if kind == "project" else Service
    schema = model.model_json_schema(by_alias=True)
    if kind == "service":
        schema["properties"].pop("name", None)  # derived from the directory name
    return schema
