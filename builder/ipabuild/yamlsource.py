"""Load YAML while keeping line numbers, so validation errors can point at a line.

PyYAML's composed node tree carries marks; pydantic reports error locations as key
paths. ``line_of`` walks the node tree along such a path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ipabuild.errors import ConfigError


class YamlDocument:
    """A parsed YAML file: its data plus the node tree for line lookups."""

    def __init__(self, path: Path, data: Any, root: yaml.Node | None) -> None:
        self.path = path
        self.data = data
        self.root = root

    def line_of(self, loc: tuple[int | str, ...]) -> int | None:
        """1-based line of the deepest node along ``loc`` that exists."""
        node = self.root
        line = node.start_mark.line + 1 if node is not None else None
        for key in loc:
            if isinstance(node, yaml.MappingNode):
                match = next(
                    ((k, v) for k, v in node.value if getattr(k, "value", None) == key), None
                )
                if match is None:
                    break
                line = match[0].start_mark.line + 1
                node = match[1]
            elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
                if key >= len(node.value):
                    break
                node = node.value[key]
                line = node.start_mark.line + 1
            else:
                break
        return line


def load_yaml(path: Path) -> YamlDocument:
    """Parse ``path``; a syntax error becomes a :class:`ConfigError` with its line."""
    try:
        text = path.read_text()
    except FileNotFoundError as exc:
        raise ConfigError(path, "file not found", fix="create it or check the path") from exc
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = f"invalid YAML: {exc.problem or exc.context}"
        raise ConfigError(path, problem, line, "correct the YAML syntax at that line") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(path, "the top level must be a mapping", 1, "write key: value pairs")
    return YamlDocument(path, data, root)
