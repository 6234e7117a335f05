"""Dead podman secret records (data gone, record kept) are found and dropped, nothing else."""

from __future__ import annotations

import json
from pathlib import Path

from ipabuild.stack.secretrecords import broken_records, drop_records


def _store(tmp_path: Path) -> Path:
    store = tmp_path / "secrets"
    (store / "filedriver").mkdir(parents=True)
    records = {name: {"name": f"n-{name}", "id": name, "driver": "file"}
               for name in ("alive", "dead")}
    (store / "secrets.json").write_text(json.dumps({
        "secrets": records, "nameToID": {f"n-{k}": k for k in records},
        "idToName": {k: f"n-{k}" for k in records}}))
    (store / "filedriver" / "secretsdata.json").write_text(json.dumps({"alive": "c2VjcmV0"}))
    return store


def test_only_records_without_data_are_broken_and_dropped(tmp_path: Path) -> None:
    store = _store(tmp_path)
    assert broken_records(store) == {"dead": "n-dead"}
    drop_records(["dead"], store)
    document = json.loads((store / "secrets.json").read_text())
    assert list(document["secrets"]) == ["alive"]
    assert document["nameToID"] == {"n-alive": "alive"}
    assert document["idToName"] == {"alive": "n-alive"}
    assert broken_records(store) == {}


def test_a_host_without_a_secret_store_has_nothing_broken(tmp_path: Path) -> None:
    assert broken_records(tmp_path / "none") == {}
