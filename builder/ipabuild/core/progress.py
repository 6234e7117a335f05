"""Progress output of long runs (images, up): a live table on a terminal, plain
timestamped lines in CI.

With ``--json`` the machine-readable document owns stdout, so progress goes to
stderr (or nowhere with ``--quiet``).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.live import Live
from rich.table import Table

Reporter = Callable[[str, str], None]
"""Told (subject, message) for each event of a long run: an image, a service."""



class PlainReporter:
    """One line per event: what CI logs want."""

    def __init__(self, stream=sys.stderr) -> None:  # type: ignore[no-untyped-def]
        self.stream = stream
        self.started = time.monotonic()
        self.lock = threading.Lock()

    def __call__(self, subject: str, message: str) -> None:
        with self.lock:
            elapsed = time.monotonic() - self.started
            print(f"[{elapsed:6.1f}s] {subject}: {message}", file=self.stream, flush=True)


class LiveReporter:
    """A table with one row per image, updated in place on a terminal."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.rows: dict[str, tuple[str, float]] = {}
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self.live: Live | None = None

    def __call__(self, subject: str, message: str) -> None:
        with self.lock:
            self.rows[subject] = (message, time.monotonic() - self.started)
            if self.live is not None:
                self.live.update(self._table())

    def _table(self) -> Table:
        table = Table(box=None, show_header=False)
        for subject, (message, at) in self.rows.items():
            style = "red" if "FAIL" in message else "green" if message in {"built"} else ""
            table.add_row(f"{at:6.1f}s", subject, message, style=style)
        return table

    @contextmanager
    def showing(self) -> Iterator[None]:
        with Live(self._table(), console=self.console, refresh_per_second=4) as live:
            self.live = live
            try:
                yield
            finally:
                live.update(self._table())
                self.live = None


@contextmanager
def reporter(json_output: bool, quiet: bool) -> Iterator[Reporter]:
    """The right reporter for where output goes."""
    if quiet:
        yield lambda _subject, _message: None
        return
    console = Console(stderr=True)
    if console.is_terminal and not json_output:
        live = LiveReporter(console)
        with live.showing():
            yield live
        return
    yield PlainReporter()
