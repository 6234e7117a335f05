"""Read every layer of an image (not just the final filesystem) for the contract checks.

A secret removed in a later layer still ships in the earlier one, so the checks walk
each layer tarball of ``podman save --format oci-dir``.
"""

from __future__ import annotations

import json
import re
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.integration.podman_cli import sh

# A real key, not a mention of the marker in code: header, base64 body, footer.
PRIVATE_KEY = re.compile(
    rb"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----\r?\n(?:[A-Za-z0-9+/=:, -]*\r?\n)*?"
    rb"[A-Za-z0-9+/=]{40,}\r?\n(?:[A-Za-z0-9+/=]*\r?\n)*-----END (?:[A-Z]+ )?PRIVATE KEY-----")
SECRET_NAMES = re.compile(r"(\.keytab|\.p12|\.pfx|\.jks|/key4\.db|/key3\.db|/pwdfile\.txt|"
                          r"/password\.conf|/ssl-cert-snakeoil\.key)$")
MAX_SCAN = 2 * 1024 * 1024


@dataclass(frozen=True)
class Finding:
    layer: str
    path: str
    why: str


def layer_tarballs(image: str, directory: Path) -> list[Path]:
    sh(["podman", "save", "--format", "oci-dir", "-o", str(directory), image])
    index = json.loads((directory / "index.json").read_text())
    manifest_digest = index["manifests"][0]["digest"].split(":", 1)[1]
    manifest = json.loads((directory / "blobs/sha256" / manifest_digest).read_text())
    return [directory / "blobs/sha256" / layer["digest"].split(":", 1)[1]
            for layer in manifest["layers"]]


def members(tarball: Path) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo]]:
    with tarfile.open(tarball, "r:*") as archive:
        for member in archive:
            yield archive, member


def setid_files(tarballs: list[Path]) -> list[Finding]:
    found = []
    for tarball in tarballs:
        for _, member in members(tarball):
            if member.isfile() and member.mode & (stat.S_ISUID | stat.S_ISGID):
                found.append(Finding(tarball.name[:12], member.name, oct(member.mode)))
    return found


def secret_files(tarballs: list[Path]) -> list[Finding]:
    found = []
    for tarball in tarballs:
        for archive, member in members(tarball):
            if not member.isfile():
                continue
            if SECRET_NAMES.search("/" + member.name):
                found.append(Finding(tarball.name[:12], member.name, "secret-like file name"))
                continue
            if member.size > MAX_SCAN:
                continue
            handle = archive.extractfile(member)
            data = handle.read() if handle is not None else b""
            # Compiled code (ELF objects such as libgnutls, Python bytecode) carries test
            # vectors that look like keys; key *files* are what a layer must not hold.
            if data.startswith((b"\x7fELF",)) or member.name.endswith(".pyc"):
                continue
            if PRIVATE_KEY.search(data):
                found.append(Finding(tarball.name[:12], member.name, "PEM private key"))
    return found
