"""Load YAML while keeping line numbers, so validation errors can point at a line.

PyYAML's composed node tree carries marks; pydantic reports error locations as key
paths. ``line_of`` walks the node tree along such a path.

Any file content ends in a :class:`ConfigError`, never a traceback: the text is read
through :func:`ipabuild.core.textsource.read_text` (size, UTF-8, control characters), only
the safe YAML tags construct, and the composer refuses documents nested deeper than
``MAX_DEPTH`` or larger than ``MAX_NODES`` nodes once aliases are expanded (a "billion
laughs" document fails after a few dozen events, without ever being expanded).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from ipabuild.core.errors import ConfigError
from ipabuild.core.textsource import read_text

MAX_DEPTH = 32  # the specs nest 5 to 8 levels
MAX_NODES = 10_000  # the largest spec has about 300 nodes
_SURROGATE = re.compile("[\ud800-\udfff]")

try:  # libyaml's parser, fifteen times faster than the pure-Python one
    from yaml._yaml import CParser as _Parser
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Parser(Reader, Scanner, Parser):  # type: ignore[no-redef]
        def __init__(self, stream: str) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)


class _Refused(Exception):
    """A document the bounded composer will not build."""

    def __init__(self, problem: str, mark: Any, fix: str) -> None:
        super().__init__(problem)
        self.problem, self.fix = problem, fix
        self.line = mark.line + 1 if mark is not None else None


class _BoundedComposer(Composer):
    """PyYAML's composer with a depth limit and a limit on the expanded node count.

    Each node's weight is its size with aliases expanded; an alias adds its target's
    weight without copying anything, so the running total is exactly the size of the
    tree a consumer would walk.
    """

    peek_event: Callable[[], yaml.Event]  # from the parser it is mixed with

    def __init__(self) -> None:
        Composer.__init__(self)
        self._weights: dict[int, int] = {}
        self._depth = 0
        self._total = 0

    def _add(self, weight: int, mark: Any) -> None:
        self._total += weight
        if self._total > MAX_NODES:
            raise _Refused(f"more than {MAX_NODES} YAML nodes (aliases expanded)", mark,
                           "write the values out instead of nesting aliases (&name/*name)")

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            node = super().compose_node(parent, index)
            weight = self._weights.get(id(node))
            if weight is None:  # its anchor is still open: the alias refers to itself
                raise _Refused(f"alias *{event.anchor} is used inside its own anchor",
                               event.start_mark, "a value cannot contain itself: remove it")
            self._add(weight, event.start_mark)
            return node
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Refused(f"nested deeper than {MAX_DEPTH} levels", event.start_mark,
                           "flatten that value: specs nest a few levels at most")
        node = super().compose_node(parent, index)
        self._depth -= 1
        if node is None:
            return None
        weight = 1
        if isinstance(node, yaml.SequenceNode):
            weight += sum(self._weights[id(child)] for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            weight += sum(self._weights[id(k)] + self._weights[id(v)] for k, v in node.value)
        self._weights[id(node)] = weight
        self._add(1, event.start_mark)
        return node


class _Loader(_BoundedComposer, _Parser, SafeConstructor, Resolver):  # type: ignore[misc]
    """Safe tags only, bounded composition, and the node being constructed for errors."""

    def __init__(self, text: str) -> None:
        _Parser.__init__(self, text)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        _BoundedComposer.__init__(self)
        self.constructing: yaml.Node | None = None

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        self.constructing = node
        data = super().construct_object(node, deep)
        if isinstance(data, str) and _SURROGATE.search(data):  # "\ud800" in pure PyYAML
            self.constructing = node
            raise ValueError("a lone surrogate escape is not a character")
        return data


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


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _yaml_error(path: Path, exc: yaml.YAMLError) -> ConfigError:
    if isinstance(exc, yaml.constructor.ConstructorError):
        mark = exc.problem_mark or exc.context_mark
        return ConfigError(path, f"unsupported YAML: {_one_line(exc.problem or exc.context)}",
                           mark.line + 1 if mark is not None else None,
                           "use plain strings, numbers, lists and mappings with string keys "
                           "(no !! tags)")
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        return ConfigError(path, f"invalid YAML: {_one_line(exc.problem or exc.context)}",
                           mark.line + 1 if mark is not None else None,
                           "correct the YAML syntax at that line")
    if isinstance(exc, yaml.reader.ReaderError):
        problem = f"invalid YAML: {_one_line(exc.reason)} at offset {exc.position}"
        return ConfigError(path, problem, None, "save the file as plain UTF-8 text")
    return ConfigError(path, f"invalid YAML: {_one_line(exc)}", None,
                       "correct the YAML syntax")


def parse_yaml(path: Path, text: str) -> YamlDocument:
    """Parse ``text`` (the content of ``path``) into data and node tree, or a ConfigError."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except _Refused as exc:
        raise ConfigError(path, exc.problem, exc.line, exc.fix) from exc
    except yaml.YAMLError as exc:
        raise _yaml_error(path, exc) from exc
    except (ValueError, TypeError, LookupError, ArithmeticError, AttributeError) as exc:
        # A safe tag whose constructor rejects the value: 2024-13-45 as a timestamp,
        # `!!bool maybe`, an integer of more digits than Python converts, ...
        node = loader.constructing
        line = node.start_mark.line + 1 if node is not None else None
        value = getattr(node, "value", None)
        shown = f" {_one_line(value)[:40]!r}" if isinstance(value, str) else ""
        raise ConfigError(path, f"value{shown} cannot be read: {_one_line(exc)[:120]}", line,
                          "quote it to make it a string, or correct it") from exc
    except RecursionError as exc:  # the depth limit makes this unreachable; belt and braces
        raise ConfigError(path, "nested too deeply", None, "flatten the file") from exc
    finally:
        loader.dispose()
    return YamlDocument(path, data, root)


def load_yaml(path: Path) -> YamlDocument:
    """Read and parse ``path``: every problem is a :class:`ConfigError` with its line."""
    doc = parse_yaml(path, read_text(path))
    if doc.data is None:
        doc.data = {}
    if not isinstance(doc.data, dict):
        raise ConfigError(path, "the top level must be a mapping", 1, "write key: value pairs")
    return doc
