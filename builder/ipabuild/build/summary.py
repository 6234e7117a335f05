"""The closing table of ``ipabuild images``: one row per image, coloured by status."""

from __future__ import annotations

from rich.table import Table

from ipabuild.build.results import ImageResult
from ipabuild.core.tables import new_table


def summary_table(results: list[ImageResult]) -> Table:
    """The closing table of ``ipabuild images``."""
    table = new_table("ipabuild images", ("service", "image", "status", "id", "size", "seconds"),
                      whole=("service", "status", "id", "size", "seconds"))
    for r in results:
        size = f"{r.size / 1e6:.0f} MB" if r.size else ""
        style = {"failed": "red", "built": "green", "cached": "cyan"}.get(r.status, "")
        table.add_row(r.service, r.name, r.status, r.image_id[:12], size, f"{r.seconds:.1f}",
                      style=style)
    return table
