"""Pinned Python wheels, fetched on the host into the build context.

Why on the host: pip inside a build container does not trust this kind of host's
package proxy (its CA is only in the host's bundle). The spec pins name, version and
sha256, so the cache key covers exactly what is installed; a file whose hash differs
is refused, never used.
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
from pathlib import Path

from ipabuild.core.commands import run
from ipabuild.core.errors import IpabuildError
from ipabuild.spec.model import Wheel


class WheelError(IpabuildError):
    """A pinned wheel could not be fetched, or its hash is not the pinned one."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_wheel(wheel: Wheel, cache_dir: Path) -> Path:
    """The wheel file for ``wheel``, from ``cache_dir`` or downloaded into it by pip."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    normalised = wheel.name.replace("-", "_").lower()
    for candidate in sorted(cache_dir.glob("*.whl")):
        head = candidate.name.split("-")
        if head[0].lower() == normalised and head[1] == wheel.version:
            if _sha256(candidate) == wheel.sha256:
                return candidate
            candidate.unlink()  # a stale or corrupt download: fetch it again
    with tempfile.TemporaryDirectory(dir=cache_dir) as scratch:
        result = run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                      "--only-binary=:all:", "--dest", scratch,
                      f"{wheel.name}=={wheel.version}"], check=False)
        files = sorted(Path(scratch).glob("*.whl"))
        if not result.succeeded or not files:
            raise WheelError(f"pip could not download {wheel.name}=={wheel.version}: "
                             f"{result.tail(3).strip() or 'no wheel in its output'} "
                             f"(check the host reaches PyPI)")
        got = _sha256(files[0])
        if got != wheel.sha256:
            raise WheelError(f"{files[0].name}: sha256 {got} is not the pinned "
                             f"{wheel.sha256}; fix the pin only if the new file is trusted")
        target = cache_dir / files[0].name
        files[0].replace(target)
    return target
