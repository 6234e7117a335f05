"""One topological order for specs: dependants after what they need, cycles refused.

``dependency_order`` and ``with_dependencies`` apply it to ``depends_on``.

Shared by the run stage (``depends_on``) and the build stage (``copy_from`` stages), which
differ only in where a spec's prerequisites come from and what a cycle is called.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from ipabuild.core.errors import UsageError
from ipabuild.spec.model import Service


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


def dependency_order(services: list[Service]) -> list[Service]:
    """Services sorted so that each comes after what it depends on."""
    by_name = {s.name: s for s in services}
    return topological(services, lambda s: [by_name[d] for d in s.depends_on if d in by_name],
                       "dependency cycle", "fix depends_on in the service specs")


def with_dependencies(services: list[Service], names: list[str]) -> list[Service]:
    """The named services plus everything they depend on, transitively."""
    by_name = {s.name: s for s in services}
    chosen: set[str] = set()
    pending = list(names)
    while pending:
        name = pending.pop()
        if name in chosen or name not in by_name:
            continue
        chosen.add(name)
        pending.extend(by_name[name].depends_on)
    return [s for s in services if s.name in chosen]


def monolith_stack(services: list[Service], monoliths: list[str]) -> list[Service]:
    """What a monolithic stack runs: the named monoliths, and each service that stands for
    the server name (``serves_name``: on a local network, the proxy does kube-proxy's job
    for both modes), in spec order.

    A dependency on a service a monolith runs (``runs``) becomes one on that monolith,
    with the stricter of the conditions: the monolith answers for the service's name (its
    aliases).
    """
    by_name = {s.name: s for s in services}
    unknown = [name for name in monoliths if name not in by_name]
    if unknown:
        raise UsageError(f"no monolith spec named {', '.join(unknown)}",
                         "name a service whose spec says `mode: monolithic`")
    runner = {part.service: name for name in monoliths for part in by_name[name].runs}
    chosen = []
    for service in services:
        if service.name in monoliths:
            chosen.append(service)
        elif service.serves_name:
            needs: dict[str, Literal["healthy", "started"]] = {}
            for dependency, condition in service.depends_on.items():
                target = runner.get(dependency, dependency)
                if needs.get(target) != "healthy":
                    needs[target] = condition
            chosen.append(service.model_copy(update={"depends_on": needs}))
    return chosen
