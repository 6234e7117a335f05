"""Dogtag's LDAP schema as one modify (a build step of the ca image).

pkispawn (``pki-server ca-db-init --setup-schema``) sends /usr/share/pki/server/conf/
schema.ldif to the directory one record at a time, and the file holds one record per
definition: 136 modifies of ``cn=schema``. 389-ds rewrites and re-validates its whole
schema on every schema modify, and with IPA's schema loaded that costs 0.2 s each here:
30 s of the CA's first start (measured with ``pkispawn -v``; docs/performance.md). The
same definitions in one record are one modify: 0.4 s. 389-ds accepts a definition it
already has (an interrupted init runs the step again), so nothing else changes.

The merged record keeps every value and its order: all attribute types first (object
classes name them), then all object classes. Anything but ``add`` of those two
attributes to ``cn=schema`` is refused, so a changed Dogtag file fails the build instead
of losing a definition.

Usage: ``python3 pki_schema.py /usr/share/pki/server/conf/schema.ldif`` (rewritten in place).
"""

from __future__ import annotations

import sys
from pathlib import Path

SCHEMA_DN = "cn=schema"
KINDS = ("attributeTypes", "objectClasses")  # the order of the merged record


class SchemaFileError(ValueError):
    """The file holds something the merge does not know how to keep."""


def unfold(text: str) -> list[str]:
    """LDIF lines with continuations (a line starting with one space) joined."""
    lines: list[str] = []
    for raw in text.splitlines():
        if raw.startswith(" ") and lines:
            lines[-1] += raw[1:]
        else:
            lines.append(raw)
    return lines


def definitions(text: str) -> dict[str, list[str]]:
    """Every attribute type and object class the file adds, in file order."""
    found: dict[str, list[str]] = {kind: [] for kind in KINDS}
    canonical = {kind.lower(): kind for kind in KINDS}
    for number, line in enumerate(unfold(text), start=1):
        if not line or line.startswith("#") or line == "-":
            continue
        key, sep, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if not sep:
            raise SchemaFileError(f"line {number}: not an LDIF line: {line[:60]!r}")
        if key.lower() == "dn":
            if value.lower() != SCHEMA_DN:
                raise SchemaFileError(f"line {number}: a record for {value!r}, not {SCHEMA_DN}")
        elif key.lower() == "changetype":
            if value.lower() != "modify":
                raise SchemaFileError(f"line {number}: changetype {value!r}, not modify")
        elif key.lower() == "add":
            if value.lower() not in canonical:
                raise SchemaFileError(f"line {number}: adds {value!r}, not {' or '.join(KINDS)}")
        elif key.lower() in canonical:
            found[canonical[key.lower()]].append(value)
        else:
            raise SchemaFileError(f"line {number}: {key!r} is neither an add nor a definition")
    if not any(found.values()):
        raise SchemaFileError("no attribute type or object class in the file")
    return found


def one_modify(text: str) -> str:
    """The file's definitions as a single modify of cn=schema."""
    found = definitions(text)
    out = [f"dn: {SCHEMA_DN}", "changetype: modify"]
    for kind in KINDS:
        if found[kind]:
            out += [f"add: {kind}", *(f"{kind}: {value}" for value in found[kind]), "-"]
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    path = Path(argv[1])
    text = path.read_text(encoding="utf-8")
    try:
        merged = one_modify(text)
    except SchemaFileError as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 1
    if definitions(merged) != definitions(text):
        print(f"{path}: the merged record lost a definition", file=sys.stderr)
        return 1
    path.write_text(merged, encoding="utf-8")
    counts = definitions(merged)
    print(f"{path}: {len(counts['attributeTypes'])} attribute types and "
          f"{len(counts['objectClasses'])} object classes in one modify")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
