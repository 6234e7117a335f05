"""One topological order for specs: dependants after what they need, cycles refused.

Shared by the run stage (``depends_on``) and the build stage (``copy_from`` stages), which
differ only in where a spec's prerequisites come from and what a cycle is called.
"""

from __future__ import annotations

from collections.abc import Callable

from ipabuild.errors import UsageError
from ipabuild.spec import Service


def topological(services: list[Service], prerequisites: Callable[[Service], list[Service]],
                what: str, fix: str) -> list[Service]:
    """``services`` and their prerequisites, each after the ones it needs (depth first, in
    the given order); a cycle is a UsageError naming a service on it."""
    ordered: list[Service] = []
    visiting: set[str] = set()

    def visit(service: Service) -> None:
        if service in ordered:
            return
        if service.name in visiting:
            raise UsageError(f"{what} through {service.name!r}", fix)
        visiting.add(service.name)
        for needed in prerequisites(service):
            visit(needed)
        visiting.discard(service.name)
        ordered.append(service)

    for service in services:
        visit(service)
    return ordered
