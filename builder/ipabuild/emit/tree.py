"""Emit ``kustomize/``: base, components and overlays for split and monolithic-userns.

Deterministic (same specs, same bytes): every file is ``yaml.safe_dump`` with sorted keys
of documents built in spec order, so the committed tree can be drift-checked
(``ipabuild manifests --check``). What each file holds is built in ``ipabuild.emit.manifests``.
Secret *values* are never generated here: ``kustomize/secrets/`` holds a committed
kustomization whose files ``ipabuild secrets --out kustomize/secrets`` writes (git-ignored).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ipabuild.emit.manifests.common import dump_header
from ipabuild.emit.manifests.layout import SECRETS_GITIGNORE, ManifestOptions, build_tree
from ipabuild.spec.model import Project, Service

KUSTOMIZE_DIR = "kustomize"
__all__ = ["KUSTOMIZE_DIR", "Drift", "ManifestOptions", "WriteReport", "check_manifests",
           "render_manifests", "write_manifests"]


class _Dumper(yaml.SafeDumper):
    """Plain YAML for people: no anchors/aliases, multi-line strings as literal blocks."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _dump(documents: list[dict]) -> str:  # type: ignore[type-arg]
    body = "---\n".join(yaml.dump(d, Dumper=_Dumper, sort_keys=True, default_flow_style=False,
                                   width=100) for d in documents)
    return dump_header() + body


def render_manifests(project: Project, services: list[Service],
                     options: ManifestOptions) -> dict[str, str]:
    """Every file of kustomize/ (relative path -> text), sorted by path."""
    files = {path: _dump(docs) for path, docs in build_tree(project, services, options).items()}
    files["secrets/.gitignore"] = SECRETS_GITIGNORE
    return dict(sorted(files.items()))


def _managed(directory: Path) -> dict[str, str]:
    """The files under kustomize/ that `manifests` owns (not the git-ignored secret values)."""
    found: dict[str, str] = {}
    if not directory.is_dir():
        return found
    for path in sorted(directory.rglob("*")):
        if not path.is_file():
            continue
        relative = path.relative_to(directory).as_posix()
        if relative.startswith("secrets/") and relative not in (
                "secrets/kustomization.yaml", "secrets/.gitignore"):
            continue
        found[relative] = path.read_bytes().decode(errors="replace")  # corrupt: drift
    return found


@dataclass
class WriteReport:
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def write_manifests(root: Path, files: dict[str, str]) -> WriteReport:
    """Write kustomize/ (only files whose bytes change) and remove stale generated files."""
    directory = root / KUSTOMIZE_DIR
    current = _managed(directory)
    report = WriteReport()
    for relative, text in files.items():
        if current.get(relative) == text:
            report.unchanged.append(relative)
            continue
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        report.written.append(relative)
    for relative in current:
        if relative not in files:
            (directory / relative).unlink()
            report.removed.append(relative)
    return report


@dataclass(frozen=True)
class Drift:
    """One file of kustomize/ that differs from what the specs produce."""

    path: str
    state: str  # "changed", "missing" (should exist) or "unexpected" (should not)
    diff: list[str]

    def summary(self, max_lines: int = 12) -> str:
        head = f"  {self.state:10} {KUSTOMIZE_DIR}/{self.path}"
        if self.state != "changed":
            return head
        added = sum(1 for line in self.diff if line.startswith("+")
                    and not line.startswith("+++"))
        removed = sum(1 for line in self.diff if line.startswith("-")
                      and not line.startswith("---"))
        body = [line for line in self.diff if not line.startswith(("---", "+++"))]
        shown = [f"      {line}" for line in body[:max_lines]]
        if len(body) > max_lines:
            shown.append(f"      ... {len(body) - max_lines} more diff lines")
        return "\n".join([f"{head} (+{added} -{removed})", *shown])


def check_manifests(root: Path, files: dict[str, str]) -> list[Drift]:
    """The differences between kustomize/ on disk and ``files``; empty when current."""
    current = _managed(root / KUSTOMIZE_DIR)
    drifts = []
    for relative in sorted({*files, *current}):
        want, have = files.get(relative), current.get(relative)
        if want == have:
            continue
        if have is None:
            drifts.append(Drift(relative, "missing", []))
        elif want is None:
            drifts.append(Drift(relative, "unexpected", []))
        else:
            diff = list(difflib.unified_diff(have.splitlines(), want.splitlines(),
                                             "committed", "generated", n=0, lineterm=""))
            drifts.append(Drift(relative, "changed", [d for d in diff
                                                      if not d.startswith("@@")]))
    return drifts
