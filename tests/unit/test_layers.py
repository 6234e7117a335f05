"""The package's folders are the pipeline, and imports only point down it.

spec -> build -> emit -> stack -> proof: a stage may import an earlier stage and the
shared plumbing (``core``), never a later stage; ``core`` imports no stage at all. The
CLI and ``doctor`` sit above every stage. Lazy imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "builder" / "ipabuild"
PIPELINE = ["core", "spec", "build", "emit", "stack", "proof"]  # earliest first
ABOVE = {"cli", "doctor"}  # may import any stage


def layer_of(module: str) -> str | None:
    """The stage (or ``cli``/``doctor``) of a dotted ``ipabuild.`` module; None for the
    package root (its version and data paths)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "ipabuild" else None


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every ipabuild import in ``path``, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "ipabuild":  # `from ipabuild import cli` names a submodule
                found += [(node.lineno, f"ipabuild.{a.name}") for a in node.names]
            elif node.module.startswith("ipabuild."):
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("ipabuild.")]
    return found


def later_stage_imports(path: Path, package: Path = PACKAGE) -> list[str]:
    """Each import in ``path`` (a module under ``package``) of a stage after its own, as
    ``file:line: imports module``."""
    own = layer_of("ipabuild." + ".".join(path.relative_to(package).with_suffix("").parts))
    if own in ABOVE or own is None:
        return []
    assert own in PIPELINE, f"{path}: not in a stage subpackage ({', '.join(PIPELINE)})"
    rank = PIPELINE.index(own)
    return [f"{path.relative_to(package)}:{line}: imports {module}"
            for line, module in imported_modules(path)
            if ((layer := layer_of(module)) in PIPELINE and PIPELINE.index(layer) > rank)
            or layer in ABOVE]


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE or p.stem == "doctor")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_later_stage(path: Path) -> None:
    assert later_stage_imports(path) == []


def test_every_module_lives_in_a_stage_or_above_them() -> None:
    top = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert top <= ABOVE, f"modules beside the stages: {sorted(top - ABOVE)}"
    assert {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()} == {
        *PIPELINE, "cli"}


def test_every_stage_says_what_it_takes_and_gives() -> None:
    for stage in PIPELINE:
        doc = ast.get_docstring(ast.parse((PACKAGE / stage / "__init__.py").read_text()))
        assert doc and len(doc.split()) > 15, f"{stage}/__init__.py needs its docstring"


def test_the_check_sees_a_later_stage_import(tmp_path: Path) -> None:
    """The check itself fails on what it exists to catch (a build module importing the
    stack), and passes the same import pointing down the pipeline."""
    (tmp_path / "build").mkdir()
    probe = tmp_path / "build" / "probe.py"
    probe.write_text("def f():\n    from ipabuild.stack.plan import ServicePlan\n")
    assert later_stage_imports(probe, tmp_path) == ["build/probe.py:2: imports ipabuild.stack.plan"]
    probe.write_text("from ipabuild.spec.model import Service\nfrom ipabuild import cli\n")
    assert later_stage_imports(probe, tmp_path) == ["build/probe.py:2: imports ipabuild.cli"]
    probe.write_text("from ipabuild.spec.model import Service\n")
    assert later_stage_imports(probe, tmp_path) == []
