"""podman 4.3's secret store: find and drop records whose data is gone.

Why: after ``podman system reset`` (or a crash between its two writes) podman 4.3 can keep a
secret's record in ``secrets.json`` while ``filedriver/secretsdata.json`` no longer holds its
data. Such a secret can be neither removed ("no secret data with ID") nor created again
("secret name in use"), so ``ipabuild up``, ``ipabuild secrets --podman`` and compose fail on
that host for good. ``ipabuild doctor --fix`` drops the dead records, under podman's own lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from pathlib import Path

DEFAULT_STORE = Path("/var/lib/containers/storage/secrets")


def _load(path: Path) -> dict:  # type: ignore[type-arg]
    return json.loads(path.read_text()) if path.exists() else {}


def broken_records(store: Path = DEFAULT_STORE) -> dict[str, str]:
    """ID -> name of every file-driver secret whose data is missing."""
    records = _load(store / "secrets.json").get("secrets") or {}
    data = _load(store / "filedriver" / "secretsdata.json")
    return {secret_id: str(entry.get("name", "?")) for secret_id, entry in records.items()
            if entry.get("driver") == "file" and secret_id not in data}


def drop_records(ids: list[str], store: Path = DEFAULT_STORE) -> None:
    """Remove the records ``ids`` from ``secrets.json`` while holding podman's lock."""
    path = store / "secrets.json"
    with open(store / "secrets.lock", "a+") as lock:
        fcntl.lockf(lock, fcntl.LOCK_EX)  # podman's lockfile takes a POSIX record lock
        document = _load(path)
        for secret_id in ids:
            name = (document.get("secrets") or {}).pop(secret_id, {}).get("name")
            (document.get("idToName") or {}).pop(secret_id, None)
            if name and (document.get("nameToID") or {}).get(name) == secret_id:
                document["nameToID"].pop(name)
        with tempfile.NamedTemporaryFile("w", dir=store, delete=False) as new:
            json.dump(document, new)
        os.chmod(new.name, path.stat().st_mode & 0o777)
        os.replace(new.name, path)
