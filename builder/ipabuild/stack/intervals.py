"""Intervals of integers (host IDs, host ports) and the free-space arithmetic the host
registries allocate with: a pool minus what is taken, first fit."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, order=True)
class Interval:
    """Integers ``start`` .. ``start + size - 1`` (host IDs, ports); ``owner`` says whose,
    for messages."""

    start: int
    size: int
    owner: str = field(default="", compare=False)

    @property
    def end(self) -> int:
        """One past the last."""
        return self.start + self.size

    def overlaps(self, other: Interval) -> bool:
        return self.start < other.end and other.start < self.end

    def __str__(self) -> str:
        return f"{self.start}-{self.end - 1}" if self.size > 1 else str(self.start)


def subtract(pool: list[Interval], used: list[Interval]) -> list[Interval]:
    """``pool`` minus ``used`` as sorted, non-overlapping free intervals."""
    free = []
    ordered = sorted(used)
    for block in sorted(pool):
        cursor = block.start
        for taken in ordered:
            if taken.end <= cursor:
                continue
            if taken.start >= block.end:
                break
            if taken.start > cursor:
                free.append(Interval(cursor, taken.start - cursor))
            cursor = max(cursor, taken.end)
        if cursor < block.end:
            free.append(Interval(cursor, block.end - cursor))
    return free


def intersect(first: list[Interval], second: list[Interval]) -> list[Interval]:
    """IDs in both lists (the sub-ID range usable for UIDs and GIDs at once)."""
    found = [Interval(max(a.start, b.start), min(a.end, b.end) - max(a.start, b.start))
             for a in first for b in second if a.overlaps(b)]
    return sorted(found)


def first_fit(free: list[Interval], size: int, from_top: bool = False) -> Interval | None:
    """The first gap (lowest, or highest with ``from_top``) that holds ``size`` IDs."""
    fitting = [gap for gap in free if gap.size >= size]
    if not fitting:
        return None
    if from_top:
        return Interval(fitting[-1].end - size, size)
    return Interval(fitting[0].start, size)
