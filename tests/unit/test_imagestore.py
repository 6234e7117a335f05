"""One `podman image inspect` for many images (ipabuild/build/imagestore.py): found ones by
any of their names or their ID, missing ones absent, podman's exit 125 for those."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ipabuild.build import imagestore
from ipabuild.core.commands import CommandResult


def _podman_says(monkeypatch: pytest.MonkeyPatch, documents: list[dict[str, Any]],
                 returncode: int) -> list[list[str]]:
    calls: list[list[str]] = []

    def run(argv: list[str], check: bool = True) -> CommandResult:
        calls.append(argv)
        return CommandResult(argv, returncode, json.dumps(documents), "")

    monkeypatch.setattr(imagestore, "run", run)
    return calls


def test_many_images_in_one_call_missing_ones_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _podman_says(monkeypatch, [
        {"Id": "aaa", "RepoTags": ["localhost/ipabuild/ldap:latest"], "Size": 5,
         "Config": {"Labels": {"io.ipabuild.cache-key": "k"}, "User": "10389:0"}},
        {"Id": "bbb", "RepoTags": ["localhost/ipabuild/base-debian-trixie:c0",
                                   "localhost/ipabuild/base:x"]},
    ], returncode=125)
    found = imagestore.inspect_images(["localhost/ipabuild/ldap:latest",
                                       "localhost/ipabuild/kdc:latest",
                                       "localhost/ipabuild/base:x", "bbb",
                                       "localhost/ipabuild/ldap:latest"])
    assert len(calls) == 1 and calls[0].count("localhost/ipabuild/ldap:latest") == 1
    assert sorted(found) == ["bbb", "localhost/ipabuild/base:x", "localhost/ipabuild/ldap:latest"]
    ldap = found["localhost/ipabuild/ldap:latest"]
    assert (ldap.image_id, ldap.size, ldap.user) == ("aaa", 5, "10389:0")
    assert ldap.labels == {"io.ipabuild.cache-key": "k"}


def test_nothing_asked_nothing_run_and_garbage_is_nothing_found(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _podman_says(monkeypatch, [], returncode=0)
    assert imagestore.inspect_images([]) == {}
    assert calls == []
    monkeypatch.setattr(imagestore, "run",
                        lambda argv, check=True: CommandResult(argv, 125, "Error: boom", ""))
    assert imagestore.inspect_images(["x"]) == {}
