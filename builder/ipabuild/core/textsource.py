"""Read a project file (a spec, a template) as text, or fail with one clear line.

Every file a user edits reaches ipabuild through :func:`read_text`: bounded in size,
regular files only (a FIFO would block, a device never ends), strictly UTF-8 and free
of control characters. Each refusal is a :class:`ConfigError` naming the file, the line
when there is one, and the fix. :class:`TemplateLoader` gives Jinja2 the same checks.
"""

from __future__ import annotations

import codecs
import errno
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path

import jinja2
from jinja2.loaders import split_template_path

from ipabuild.core.errors import ConfigError

MAX_BYTES = 1 << 20  # the largest spec is a few KiB; a MiB is a mistake, not a spec

# What YAML 1.1 allows in a stream (PyYAML's Reader.NON_PRINTABLE, inverted): tab, line
# feed, carriage return, printable ASCII, NEL and everything from U+00A0 on (no surrogates:
# strict decoding cannot produce them).
_CONTROL = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_NAMES = {0: "NUL", 0x1B: "ESC", 0x7F: "DEL"}


def _open_failure(path: Path, exc: OSError) -> ConfigError:
    if exc.errno == errno.ENOENT:
        return ConfigError(path, "file not found", fix="create it or check the path")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return ConfigError(path, "cannot be read (permission denied)",
                           fix=f"make it readable: chmod u+r {path}")
    if exc.errno == errno.EISDIR:
        return ConfigError(path, "is a directory, not a file", fix="replace it with the file")
    if exc.errno == errno.ELOOP:
        return ConfigError(path, "is a symlink loop", fix="point the symlink at a real file")
    reason = exc.strerror or type(exc).__name__
    return ConfigError(path, f"cannot be read: {reason}", fix="check the path and the file")


def read_bytes(path: Path, limit: int = MAX_BYTES) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them, or a ConfigError."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise _open_failure(path, exc) from exc
    except ValueError as exc:  # an embedded NUL in the path itself
        raise ConfigError(path, "is not a valid file name", fix="rename it") from exc
    chunks: list[bytes] = []
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise ConfigError(path, "is not a regular file", fix="replace it with a regular file")
        wanted = limit + 1 if status.st_size <= limit else 0
        while wanted > 0 and (chunk := os.read(fd, min(wanted, 1 << 16))):
            chunks.append(chunk)
            wanted -= len(chunk)
    except OSError as exc:
        raise _open_failure(path, exc) from exc
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit or status.st_size > limit:
        raise ConfigError(path, f"is larger than {limit // 1024} KiB",
                          fix="check the file: a spec or template is a few KiB of text")
    return data


def decode_text(path: Path, data: bytes) -> str:
    """``data`` as strict UTF-8 without control characters (a leading BOM is dropped)."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            path, f"not UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start}", line,
            "save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)",
        ) from exc
    found = _CONTROL.search(text)
    if found is not None:
        code = ord(found.group())
        line = text.count("\n", 0, found.start()) + 1
        column = found.start() - (text.rfind("\n", 0, found.start()) + 1) + 1
        name = _NAMES.get(code, f"U+{code:04X}")
        raise ConfigError(path, f"control character {name} at column {column}", line,
                          "remove it (a YAML string can spell one as an escape, e.g. \"\\t\")")
    return text


def read_text(path: Path, limit: int = MAX_BYTES) -> str:
    """``path`` as checked text: see :func:`read_bytes` and :func:`decode_text`."""
    return decode_text(path, read_bytes(path, limit))


def is_file(path: Path) -> bool:
    """``path.is_file()`` that answers False, not OSError, for a name too long or invalid."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


class TemplateLoader(jinja2.FileSystemLoader):
    """A FileSystemLoader whose templates are read through :func:`read_text`.

    A template that is not UTF-8, holds a control character or is too large fails as a
    ConfigError naming the template file, instead of a UnicodeDecodeError from Jinja2.
    """

    def get_source(self, environment: jinja2.Environment,
                   template: str) -> tuple[str, str, Callable[[], bool]]:
        pieces = split_template_path(template)
        for directory in self.searchpath:
            path = Path(directory, *pieces)
            if is_file(path):
                break
        else:
            raise jinja2.TemplateNotFound(template)
        text = read_text(path)
        mtime = path.stat().st_mtime

        def uptodate() -> bool:
            try:
                return path.stat().st_mtime == mtime
            except OSError:
                return False

        return text, os.path.normpath(path), uptodate
