"""When each service of ``ipabuild up`` may start: once what it depends on is as its spec
asks (``depends_on``: healthy, or only started), so services that do not wait for each
other come up in parallel.

Why: a stack's first start is dominated by the CA's one-time init, which need not wait
for the KDC to be healthy (it waits itself for the realm's master key); on a restart the API
need not wait for the CA's Tomcat (its certificates are already in the directory). Run
in turn, those waits added up to ~10 s of every ``up`` here (docs/performance.md).

The first failure wins: it is what ``wait_all`` raises, and every gate still closed
stays closed (``wait`` says False), so nothing new starts after a failure.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

POLL_SECONDS = 0.2


class StartGates:
    """Per service: started and healthy, set by the thread that brings it up."""

    def __init__(self, services: Iterable[str]) -> None:
        names = list(services)
        self._started = {name: threading.Event() for name in names}
        self._healthy = {name: threading.Event() for name in names}
        self._failed = threading.Event()
        self._error: BaseException | None = None
        self._lock = threading.Lock()

    def __contains__(self, service: object) -> bool:
        return service in self._started

    def started(self, service: str) -> None:
        self._started[service].set()

    def healthy(self, service: str) -> None:
        self._started[service].set()
        self._healthy[service].set()

    def fail(self, error: BaseException) -> None:
        """Record a failure; only the first is kept (later ones are its consequences)."""
        with self._lock:
            if self._error is None:
                self._error = error
        self._failed.set()

    @property
    def failed(self) -> bool:
        return self._failed.is_set()

    def wait(self, service: str, condition: str) -> bool:
        """Wait until ``service`` is ``condition`` ('healthy' or 'started'); False when
        something failed first."""
        event = (self._healthy if condition == "healthy" else self._started)[service]
        while not event.wait(POLL_SECONDS):
            if self.failed:
                return False
        return not self.failed

    def wait_all(self) -> None:
        """Return when every service is healthy; raise the first failure."""
        for event in self._healthy.values():
            while not event.wait(POLL_SECONDS):
                if self.failed:
                    break
            if self.failed:
                break
        if self._error is not None:
            raise self._error
