"""Any spec content ends in one line naming the file and the fix, exit status 2, no traceback.

A seeded mutation fuzz over copies of the real ``ipabuild.yaml`` and
``services/*/{service,files}.yaml``: byte flips, truncation, control characters and NUL,
invalid UTF-8, duplicated and nested blocks, alias bombs, ``!!python`` tags, values of
the wrong type. Most cases run the loaders directly; a sample runs the CLI
(``images --render-only``, ``manifests --check``, ``compose --check``). A case fails when
anything but an :class:`IpabuildError` escapes, or the CLI exits other than 0/1/2, or
exit 2 prints anything but one ``ipabuild: error:`` line. Reproduce one case with
``IPABUILD_FUZZ_SEED``; widen the run with ``IPABUILD_FUZZ_CASES``.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from ipabuild.cli import main
from ipabuild.core.errors import ConfigError, IpabuildError
from ipabuild.core.textsource import MAX_BYTES, TemplateLoader
from ipabuild.core.yamlsource import MAX_DEPTH, MAX_NODES, load_yaml
from ipabuild.spec.load import load_common_files, load_project, load_service, service_names
from ipabuild.spec.model import Project

ROOT = Path(__file__).resolve().parents[2]
SEED = int(os.environ.get("IPABUILD_FUZZ_SEED", "10"))
CASES = int(os.environ.get("IPABUILD_FUZZ_CASES", "3000"))
CLI_CASES = int(os.environ.get("IPABUILD_FUZZ_CLI_CASES", "60"))

Mutation = Callable[[random.Random, bytes], bytes]

CONTROL = [b"\x00", b"\x01", b"\x07", b"\x08", b"\x0b", b"\x0c", b"\x1b", b"\x7f", b"\r",
           b"\t", "\x85".encode(), "\x9b".encode(), "\u2028".encode(), "\ufeff".encode(),
           "\ufffe".encode(), "\uffff".encode()]
INVALID_UTF8 = [b"\xff", b"\xfe", b"\x80", b"\xc3\x28", b"\xe2\x28\xa1", b"\xf0\x28\x8c\xbc",
                b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80", b"\xe2\x82", b"\xe9t\xe9"]
TOKENS = [b": ", b"- ", b"[", b"]", b"{", b"}", b",", b"? ", b"&", b"*", b"!", b"|", b">",
          b"%YAML 1.1\n", b"---\n", b"...\n", b"#", b"'", b'"', b"@", b"`", b"\t", b"\n",
          b"  ", b"<<: ", b"\\", b"%"]
VALUES = [
    "[]", "{}", "[a, b]", "{a: 1}", "~", "null", "true", "no", "0", "-1", "3.5",
    "99999999999999999999999999999", "-99999999999999999999", "1e400", ".nan", "-.inf",
    "0x7fffffffffffffff", "0o777", "1" * 5000, "2024-13-45", "2024-01-01", "12:30:00",
    "!!binary aGVsbG8=", "!!binary '###'", "!!int abc", "!!float x", "!!bool maybe",
    "!!timestamp x", "!!set {a, b}", "!!omap [a]", "!!pairs [1]", "!!str", "!!null x",
    "!!python/object/apply:os.system [echo owned]", "!!python/name:os.system",
    "!!python/tuple [1, 2]", "!!python/object/new:os.system [x]", "!ruby/object {}",
    "!<tag:example.test,2024:x> y", "&x y", "*undefined", '"\\0"', '"a\\x00b"',
    '"\\ud800"', '"\\U0010ffff"', "a" * 300, "../../../../etc/passwd", "/", '""',
    "[" * 60 + "]" * 60, "{a: " * 50 + "1" + "}" * 50, "[[[[", "{{ realm }}", "'{%'",
    "[/tmp, /tmp, /tmp]", "[ldap, kdc, http, ca]", "[[a]]", "[{}]", "[~]",
    "{name: x, port: 1, service_port: 1}", "{base: trixie}", "{1: 2}", "{[a]: b}",
]
KEYS = ["1", "~", "true", "[a]", "? [a, b]", "{a: 1}", "<<", "2024-01-01", "''", "-", "x y",
        '"a\\nb"', '"\\e[2J"', '"\\u2028"', '"\\ud800"', "!!python/name:os.system"]


def _lines(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True) or [b""]


def flip_bit(rng: random.Random, data: bytes) -> bytes:
    if not data:
        return b"\x00"
    at = rng.randrange(len(data))
    return data[:at] + bytes([data[at] ^ (1 << rng.randrange(8))]) + data[at + 1:]


def random_byte(rng: random.Random, data: bytes) -> bytes:
    at = rng.randrange(len(data) + 1)
    return data[:at] + bytes([rng.randrange(256)]) + data[at + 1:]


def truncate(rng: random.Random, data: bytes) -> bytes:
    return data[:rng.randrange(len(data) + 1)]


def _insert(rng: random.Random, data: bytes, piece: bytes) -> bytes:
    at = rng.randrange(len(data) + 1)
    return data[:at] + piece + data[at:]


def insert_control(rng: random.Random, data: bytes) -> bytes:
    return _insert(rng, data, rng.choice(CONTROL))


def insert_invalid_utf8(rng: random.Random, data: bytes) -> bytes:
    return _insert(rng, data, rng.choice(INVALID_UTF8))


def insert_token(rng: random.Random, data: bytes) -> bytes:
    return _insert(rng, data, rng.choice(TOKENS))


def duplicate_block(rng: random.Random, data: bytes) -> bytes:
    lines = _lines(data)
    start = rng.randrange(len(lines))
    block = lines[start:start + rng.randint(1, 8)]
    at = rng.randrange(len(lines) + 1)
    return b"".join(lines[:at] + block + lines[at:])


def nest_block(rng: random.Random, data: bytes) -> bytes:
    lines = _lines(data)
    start = rng.randrange(len(lines))
    end = start + rng.randint(1, 10)
    indent = b" " * rng.choice([1, 2, 4])
    nested = [indent + line for line in lines[start:end]]
    head = [rng.choice([b"nested:\n", b"- \n", b"", b"families:\n"])]
    return b"".join(lines[:start] + head + nested + lines[end:])


def delete_lines(rng: random.Random, data: bytes) -> bytes:
    lines = _lines(data)
    start = rng.randrange(len(lines))
    return b"".join(lines[:start] + lines[start + rng.randint(1, 5):])


def swap_lines(rng: random.Random, data: bytes) -> bytes:
    lines = _lines(data)
    a, b = rng.randrange(len(lines)), rng.randrange(len(lines))
    lines[a], lines[b] = lines[b], lines[a]
    return b"".join(lines)


def _value_lines(data: bytes) -> list[int]:
    return [i for i, line in enumerate(_lines(data)) if b": " in line or line.endswith(b":\n")]


def swap_value(rng: random.Random, data: bytes) -> bytes:
    """A value of another type (or tag) where a key's value was."""
    lines, candidates = _lines(data), _value_lines(data)
    if not candidates:
        return data + b"x: " + rng.choice(VALUES).encode() + b"\n"
    i = rng.choice(candidates)
    key = lines[i].split(b":", 1)[0]
    lines[i] = key + b": " + rng.choice(VALUES).encode() + b"\n"
    return b"".join(lines)


def swap_key(rng: random.Random, data: bytes) -> bytes:
    """A key that is not a string (or not a key at all) where one was."""
    lines, candidates = _lines(data), _value_lines(data)
    if not candidates:
        return data
    i = rng.choice(candidates)
    key, _, rest = lines[i].partition(b":")
    indent = key[:len(key) - len(key.lstrip())]
    lines[i] = indent + rng.choice(KEYS).encode() + b":" + rest
    return b"".join(lines)


def splice_value(rng: random.Random, data: bytes) -> bytes:
    """A real value from elsewhere in the file under another key: well-typed nonsense."""
    lines, candidates = _lines(data), _value_lines(data)
    if len(candidates) < 2:
        return data
    a, b = rng.choice(candidates), rng.choice(candidates)
    key = lines[a].split(b":", 1)[0]
    lines[a] = key + b":" + lines[b].split(b":", 1)[1]
    return b"".join(lines)


def alias_bomb(rng: random.Random, data: bytes) -> bytes:
    kind = rng.randrange(4)
    if kind == 0:  # billion laughs
        levels = [b'l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n']
        levels += [f"l{n}: &l{n} [{','.join([f'*l{n - 1}'] * 9)}]\n".encode()
                   for n in range(1, rng.randint(3, 10))]
        return b"".join(levels) + data
    if kind == 1:  # a value that contains itself
        return data + b"loop: &loop [*loop]\n"
    if kind == 2:  # merge-key bomb
        return (b"m0: &m0 {a: 1, b: 2, c: 3}\n"
                + b"".join(f"m{n}: &m{n} {{<<: [{', '.join([f'*m{n - 1}'] * 4)}], k{n}: 1}}\n"
                           .encode() for n in range(1, 9)) + data)
    lines, candidates = _lines(data), _value_lines(data)  # an alias where a value was
    if candidates:
        i = rng.choice(candidates)
        lines[i] = lines[i].split(b":", 1)[0] + b": *" + rng.choice([b"a", b"l0", b""]) + b"\n"
    return b"a: &a [x]\n" + b"".join(lines)


def python_tag(rng: random.Random, data: bytes) -> bytes:
    tag = rng.choice([b"!!python/object/apply:os.system [echo owned]",
                      b"!!python/object/new:type [x, [], {}]", b"!!python/name:builtins.eval",
                      b"!!python/module:os", b"!!python/bytes AAA=", b"!!python/none ''"])
    if rng.random() < 0.5:
        return tag + b"\n" + data
    return data + b"pwn: " + tag + b"\n"


def deep_nesting(rng: random.Random, data: bytes) -> bytes:
    depth = rng.choice([MAX_DEPTH + 1, 200, 5000, 100_000])
    if rng.random() < 0.5:
        value = b"[" * depth + b"]" * depth
    else:
        value = b"".join(b" " * n + b"k:\n" for n in range(min(depth, 400)))
        return data + b"deep:\n" + value
    return data + b"deep: " + value + b"\n"


def re_encode(rng: random.Random, data: bytes) -> bytes:
    text = data.decode("utf-8", errors="replace") + "# é ü\n"
    encoding = rng.choice(["utf-16", "utf-32", "latin-1", "utf-8-sig", "cp1252"])
    return text.encode(encoding, errors="replace")


def more_documents(rng: random.Random, data: bytes) -> bytes:
    return data + rng.choice([b"---\nother: 1\n", b"\n---\n", b"...\n---\n", b"%TAG ! x\n"])


def oversized(rng: random.Random, data: bytes) -> bytes:
    return data + b"# " + b"x" * (MAX_BYTES + rng.randrange(1000)) + b"\n"


MUTATIONS: list[tuple[Mutation, int]] = [
    (flip_bit, 10), (random_byte, 6), (truncate, 5), (insert_control, 6),
    (insert_invalid_utf8, 6), (insert_token, 10), (duplicate_block, 6), (nest_block, 6),
    (delete_lines, 4), (swap_lines, 4), (swap_value, 14), (swap_key, 6), (splice_value, 8),
    (alias_bomb, 3), (python_tag, 3), (deep_nesting, 2), (re_encode, 1),
    (more_documents, 1), (oversized, 1),
]


def mutate(rng: random.Random, data: bytes) -> tuple[bytes, list[str]]:
    functions, weights = zip(*MUTATIONS, strict=True)
    applied = rng.choices(functions, weights, k=rng.choice([1, 1, 1, 2, 3]))
    for function in applied:
        data = function(rng, data)
    return data, [f.__name__ for f in applied]


# --- the project tree the cases run against ------------------------------------------------


@dataclass
class Tree:
    root: Path
    originals: dict[Path, bytes]
    project: Project

    def targets(self) -> list[Path]:
        return sorted(self.originals)

    @property
    def project_file(self) -> Path:
        return self.root / "ipabuild.yaml"

    def write(self, path: Path, data: bytes) -> None:
        path.write_bytes(data)

    def restore(self, path: Path) -> None:
        path.write_bytes(self.originals[path])


def _copy_project(directory: Path) -> Path:
    shutil.copy(ROOT / "ipabuild.yaml", directory / "ipabuild.yaml")
    shutil.copytree(ROOT / "services", directory / "services")
    for generated in ("compose", "kustomize"):
        if (ROOT / generated).is_dir():
            shutil.copytree(ROOT / generated, directory / generated,
                            ignore=shutil.ignore_patterns("*-password", "*-key"))
    return directory


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    root = _copy_project(tmp_path_factory.mktemp("fuzz"))
    files = [root / "ipabuild.yaml", *sorted(root.glob("services/*/*.yaml"))]
    return Tree(root, {p: p.read_bytes() for p in files}, load_project(root))


@dataclass
class Failure:
    case: str
    target: str
    mutations: list[str]
    detail: str

    def __str__(self) -> str:
        return f"{self.case} {self.target} {'+'.join(self.mutations)}: {self.detail}"


def _escaped(exc: BaseException) -> str:
    frame = traceback.extract_tb(exc.__traceback__)[-1]
    return f"{type(exc).__name__}: {exc!s:.200} at {Path(frame.filename).name}:{frame.lineno}"


def _check_error(exc: IpabuildError) -> str | None:
    message = exc.user_message()
    if exc.exit_status == 2 and re.search("[\x00-\x1f\x7f\u2028\u2029]", message):
        return f"{type(exc).__name__} not on one printable line: {message[:300]!r}"
    return None


def _load(tree: Tree, target: Path) -> None:
    """What every command does first: the project, then the spec that changed."""
    if target == tree.project_file:
        project = load_project(tree.root)
        for name in service_names(tree.root):
            load_service(tree.root, name, project)
    elif target.name == "files.yaml":
        load_common_files(tree.root)
    else:
        load_service(tree.root, target.parent.name, tree.project)


def _cases(count: int, salt: str) -> Iterator[tuple[str, random.Random]]:
    for index in range(count):
        case = f"{SEED}-{salt}{index}"
        yield case, random.Random(case)


def test_mutated_specs_never_escape_as_tracebacks(tree: Tree) -> None:
    failures: list[Failure] = []
    refused = 0
    started = time.monotonic()
    targets = tree.targets()
    for case, rng in _cases(CASES, ""):
        target = rng.choice(targets)
        data, applied = mutate(rng, tree.originals[target])
        tree.write(target, data)
        try:
            _load(tree, target)
        except IpabuildError as exc:
            refused += 1
            problem = _check_error(exc)
            if problem:
                failures.append(Failure(case, target.name, applied, problem))
        except Exception as exc:
            failures.append(Failure(case, str(target.relative_to(tree.root)), applied,
                                    _escaped(exc)))
        finally:
            tree.restore(target)
    seconds = time.monotonic() - started
    shown = "\n".join(str(f) for f in failures[:20])
    assert not failures, f"{len(failures)} of {CASES} cases escaped ({seconds:.1f} s):\n{shown}"
    assert refused > CASES // 4, "the mutations hardly ever broke a spec: the fuzz is too weak"


@pytest.fixture
def offline_wheels(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`images --render-only` never downloads: a pinned wheel is a placeholder file."""
    from ipabuild.build.image import ImageMaker

    placeholder = tmp_path / "placeholder-0-py3-none-any.whl"
    placeholder.write_bytes(b"not a wheel")
    monkeypatch.setattr(ImageMaker, "_fetch_wheel", lambda self, wheel: placeholder)


COMMANDS = [["images", "--render-only", "{out}", "--quiet"], ["manifests", "--check"],
            ["compose", "--check"]]


@pytest.mark.usefixtures("offline_wheels")
def test_mutated_specs_through_the_cli(tree: Tree, tmp_path: Path) -> None:
    runner = CliRunner()
    failures: list[Failure] = []
    targets = tree.targets()
    for case, rng in _cases(CLI_CASES, "cli"):
        target = rng.choice(targets)
        data, applied = mutate(rng, tree.originals[target])
        command = [a.format(out=tmp_path / "out") for a in rng.choice(COMMANDS)]
        tree.write(target, data)
        try:
            result = runner.invoke(main, ["--root", str(tree.root), *command])
        finally:
            tree.restore(target)
        failure = _cli_problem(result)
        if failure:
            failures.append(Failure(case, f"{target.name} ({command[0]})", applied, failure))
    assert not failures, "\n".join(str(f) for f in failures[:20])


def _cli_problem(result) -> str | None:  # type: ignore[no-untyped-def]
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return _escaped(result.exception)
    if result.exit_code not in (0, 1, 2):
        return f"exit status {result.exit_code}"
    if result.exit_code == 2:
        lines = result.stderr.strip().splitlines()
        if len(lines) != 1 or not lines[0].startswith("ipabuild: error:"):
            return f"exit 2 without one error line: {result.stderr[:300]!r}"
    return None


# --- each input class, explicitly ----------------------------------------------------------


def _refusal(project_copy: Path, relative: str, data: bytes) -> ConfigError:
    path = project_copy / relative
    path.write_bytes(data)
    with pytest.raises(ConfigError) as caught:
        project = load_project(project_copy)
        if relative != "ipabuild.yaml":
            load_service(project_copy, path.parent.name, project)
    message = caught.value.user_message()
    assert message.startswith(str(path)) and "\n" not in message and "(fix: " in message
    return caught.value


def _cli_refusal(root: Path, *command: str) -> str:
    result = CliRunner().invoke(main, ["--root", str(root), *command])
    assert result.exit_code == 2, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception,
                                                                     SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ipabuild: error:"), result.stderr
    return lines[0]


SPEC = "services/kdc/service.yaml"


@pytest.mark.usefixtures("offline_wheels")
@pytest.mark.parametrize("command", ["images", "manifests", "compose"])
def test_non_utf8_spec_through_each_command(project_copy: Path, command: str) -> None:
    spec = project_copy / SPEC
    spec.write_bytes(b"# caf\xe9\n" + spec.read_bytes())
    arguments = [a.format(out=project_copy / "out") for c in COMMANDS if c[0] == command
                 for a in c]
    line = _cli_refusal(project_copy, *arguments)
    assert f"{spec}:1: not UTF-8: byte 0xe9 at offset 5" in line
    assert "save the file as UTF-8" in line


def test_invalid_utf8_names_line_and_offset(project_copy: Path) -> None:
    original = (project_copy / SPEC).read_bytes()
    lines = original.splitlines(keepends=True)
    broken = b"".join(lines[:3]) + b"# caf\xc3\n" + b"".join(lines[3:])
    error = _refusal(project_copy, SPEC, broken)
    assert error.line == 4 and f"offset {len(b''.join(lines[:3])) + 5}" in error.problem


@pytest.mark.parametrize("char", ["\x00", "\x1b", "\x7f", "\x08", "\x9b"])
def test_control_characters_are_refused(project_copy: Path, char: str) -> None:
    error = _refusal(project_copy, SPEC, f"description: a{char}b\n".encode())
    assert error.line == 1 and "control character" in error.problem


def test_nul_in_project_file(project_copy: Path) -> None:
    error = _refusal(project_copy, "ipabuild.yaml", b"realm: EXAMPLE.TEST\x00\n")
    assert "control character NUL" in error.problem


def test_utf8_bom_is_accepted(project_copy: Path) -> None:
    path = project_copy / "ipabuild.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert load_project(project_copy).realm == "EXAMPLE.TEST"


def test_utf16_file_is_refused(project_copy: Path) -> None:
    text = (project_copy / "ipabuild.yaml").read_text()
    error = _refusal(project_copy, "ipabuild.yaml", text.encode("utf-16"))
    assert "not UTF-8" in error.problem


def test_ten_megabyte_file_is_refused_fast(project_copy: Path) -> None:
    started = time.monotonic()
    error = _refusal(project_copy, SPEC, b"description: x\n" + b"#" * (10 << 20) + b"\n")
    assert "larger than 1024 KiB" in error.problem
    assert time.monotonic() - started < 1


@pytest.mark.parametrize("text", [
    "deep: " + "[" * 100_000 + "]" * 100_000 + "\n",
    "deep: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n",
    "deep:\n" + "".join(" " * n + f"k{n}:\n" for n in range(1, 300)),
], ids=["flow-sequences", "flow-mappings", "block-mappings"])
def test_deep_nesting_is_refused(project_copy: Path, text: str) -> None:
    started = time.monotonic()
    error = _refusal(project_copy, SPEC, text.encode())
    assert f"nested deeper than {MAX_DEPTH} levels" in error.problem and error.line
    assert time.monotonic() - started < 1


def test_billion_laughs_fails_fast(project_copy: Path) -> None:
    bomb = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    bomb += [f"a{n}: &a{n} [{','.join([f'*a{n - 1}'] * 9)}]" for n in range(1, 10)]
    started = time.monotonic()
    error = _refusal(project_copy, SPEC, ("\n".join(bomb) + "\n").encode())
    assert f"more than {MAX_NODES} YAML nodes" in error.problem and error.line
    assert time.monotonic() - started < 1


def test_recursive_alias_is_refused(project_copy: Path) -> None:
    error = _refusal(project_copy, SPEC, b"description: x\nloop: &loop [a, *loop]\n")
    assert "inside its own anchor" in error.problem and error.line == 2


def test_plain_aliases_still_work(project_copy: Path) -> None:
    spec = project_copy / SPEC
    text = spec.read_text().replace("tmpfs: [/tmp, /run]", "tmpfs: &scratch [/tmp, /run]")
    spec.write_text(text + "writable: *scratch\n")
    service = load_service(project_copy, "kdc", load_project(project_copy))
    assert service.writable == service.tmpfs == ["/tmp", "/run"]


@pytest.mark.parametrize("tag", [
    "!!python/object/apply:os.system [touch /tmp/ipabuild-owned]",
    "!!python/name:os.system", "!!python/object/new:os.system [x]", "!!python/tuple [1]",
    "!!python/module:os",
])
def test_python_tags_never_construct(project_copy: Path, tag: str) -> None:
    error = _refusal(project_copy, SPEC, f"description: {tag}\n".encode())
    assert error.line == 1 and "unsupported YAML" in error.problem and "no !! tags" in error.fix
    assert not Path("/tmp/ipabuild-owned").exists()


@pytest.mark.parametrize("value", ["2024-13-45", "!!bool maybe", "!!int abc", "1" * 5000,
                                   "!!float x", "!!timestamp x", "!!binary '###'"],
                         ids=["date", "bool", "int", "5000-digits", "float", "timestamp",
                              "binary"])
def test_values_safe_tags_cannot_construct(project_copy: Path, value: str) -> None:
    error = _refusal(project_copy, SPEC, f"description: d\nuser: {value}\n".encode())
    assert error.line == 2


@pytest.mark.parametrize(("text", "words"), [
    ("description: d\nuser: 10088\nfamilies: {debian: {base: trixie}}\nentrypoint: [x]\n"
     "1: x\n", "Keys should be strings"),
    ("? [a, b]\n: x\n", "unhashable"),
    ("- a\n- b\n", "top level must be a mapping"),
    ("description: d\nuser: 10088\nfamilies: [debian]\nentrypoint: [x]\n", "families"),
    ("description: d\nuser: 999999999999999999999999999999\nfamilies: {}\nentrypoint: [x]\n"
     "ports: [{name: p, port: 99999999999999999999, service_port: 1}]\n", "ports.0.port"),
    ("description: [a]\n", "description"),
    ("description: d\nuser: 10088\nfamilies: {debian: {base: trixie}}\nentrypoint: [x]\n"
     "environment: {1: x}\n", "environment"),
    ("description: d\nuser: 10088\nfamilies: {debian: {base: trixie}}\nentrypoint: x\n",
     "entrypoint"),
    ("description: d\nuser: 10088\nfamilies: {debian: {base: trixie}}\nentrypoint: [x]\n"
     f"files: [{{src: {'a' * 300}, dest: /x}}]\n", "does not exist"),
    ("description: d\nuser: 10088\nentrypoint: [x]\nfamilies: {debian: {base: trixie, "
     f"copy_from: [{{stage: {'s' * 300}, src: /a, dest: /b}}]}}}}\n", "not another spec"),
    ("description: d\n---\ndescription: e\n", "invalid YAML"),
])
def test_wrong_types_anywhere(project_copy: Path, text: str, words: str) -> None:
    error = _refusal(project_copy, SPEC, text.encode())
    assert words in error.user_message()


@pytest.mark.parametrize("make", ["directory", "fifo", "symlink-loop", "dangling"])
def test_spec_that_is_not_a_readable_file(project_copy: Path, make: str) -> None:
    spec = project_copy / SPEC
    spec.unlink()
    if make == "directory":
        spec.mkdir()
    elif make == "fifo":
        os.mkfifo(spec)
    elif make == "symlink-loop":
        spec.symlink_to(spec)
    else:
        spec.symlink_to(project_copy / "nowhere")
    with pytest.raises(ConfigError) as caught:
        load_yaml(spec)
    assert str(spec) in caught.value.user_message() and caught.value.fix


def test_non_utf8_template_names_the_template(project_copy: Path) -> None:
    import jinja2

    template = project_copy / "services/kdc/kadm5.acl.j2"
    template.write_bytes(b"# acl \xff\nadmin@{{ realm }}\n")
    env = jinja2.Environment(loader=TemplateLoader([str(template.parent)]))
    with pytest.raises(ConfigError) as caught:
        env.get_template("kadm5.acl.j2")
    assert caught.value.path == template and caught.value.line == 1
    assert env.get_template("kdc.conf.j2").render(realm="R")  # good templates still load


@pytest.mark.usefixtures("offline_wheels")
def test_non_utf8_template_through_images(project_copy: Path) -> None:
    (project_copy / "services/kdc/kadm5.acl.j2").write_bytes(b"# acl \xff\n")
    line = _cli_refusal(project_copy, "images", "--service", "kdc", "--quiet", "--render-only",
                        str(project_copy / "out"))
    assert "kadm5.acl.j2:1: not UTF-8" in line


def test_corrupt_generated_files_are_drift_not_tracebacks(tmp_path: Path) -> None:
    root = _copy_project(tmp_path)
    runner = CliRunner()
    assert runner.invoke(main, ["--root", str(root), "compose"]).exit_code == 0
    assert runner.invoke(main, ["--root", str(root), "manifests"]).exit_code == 0
    generated = [root / "compose/compose.yaml", root / "kustomize/base/kustomization.yaml"]
    for path in generated:
        path.write_bytes(b"\xff\xfe\x00 not UTF-8\n")
    for command in ("compose", "manifests"):
        result = runner.invoke(main, ["--root", str(root), command, "--check"])
        assert result.exit_code == 1 and "out of date" in result.stderr, result.output
        assert runner.invoke(main, ["--root", str(root), command]).exit_code == 0
    for command in ("compose", "manifests"):
        assert runner.invoke(main, ["--root", str(root), command, "--check"]).exit_code == 0


VALID = "description: d\nuser: 10088\nfamilies: {debian: {base: trixie}}\nentrypoint: [x]\n"


@pytest.mark.parametrize(("text", "shown"), [
    (VALID + '"a\\nb": 1\n', "unknown key `a\\nb`"),
    (VALID + '"\\e[2J": 1\n', "unknown key `\\x1b[2J`"),
    (VALID + '"a\\u2028b": 1\n', "unknown key `a\\u2028b`"),
    ('x: "\\ud800"\n', ""),
], ids=["newline-key", "escape-key", "line-separator", "surrogate"])
def test_escaped_control_characters_stay_on_one_line(project_copy: Path, text: str,
                                                     shown: str) -> None:
    error = _refusal(project_copy, SPEC, text.encode())  # one line: checked there
    assert shown in error.user_message() and "\x1b" not in error.user_message()
