"""Taking over volumes made in a former user namespace (ipabuild.stack.takeover): files
of that namespace's host range become the service's UID and group 0; nothing else moves.
Real files and real lchown (the suite runs as root, as ipabuild does)."""

from __future__ import annotations

import os
from pathlib import Path

from ipabuild.stack.idranges import Interval, userns_of_label
from ipabuild.stack.takeover import take_over

START, SIZE = 4294901759 - 65536, 65536
OLD = Interval(START, SIZE)
NEW_UID = 2000000006


def test_the_label_names_the_range_or_nothing() -> None:
    assert userns_of_label(f"userns={START}:{SIZE}") == OLD
    assert userns_of_label("uid=2000000006") is None
    assert userns_of_label("userns=garbage") is None
    assert userns_of_label("") is None


def test_files_of_the_old_range_are_taken_over_and_others_left(tmp_path: Path) -> None:
    root = tmp_path / "volume"
    (root / "pki-tomcat" / "alias").mkdir(parents=True)
    marker = root / ".ipabuild-initialised"
    marker.write_text("x")
    key = root / "pki-tomcat" / "alias" / "key4.db"
    key.write_text("k")
    link = root / "pki-tomcat" / "lib"
    link.symlink_to("/usr/share/pki")
    stranger = root / "someone-elses"
    stranger.write_text("s")
    for path in (root, root / "pki-tomcat", root / "pki-tomcat" / "alias", key, link):
        os.lchown(path, START + 10017, START)  # pkiuser, group 0 inside the old namespace
    os.lchown(marker, START, START)  # root inside it
    os.lchown(stranger, 1234, 5678)
    changed = take_over(root, OLD, NEW_UID)
    assert changed == 6
    for path in (root, root / "pki-tomcat", key, link, marker):
        facts = path.lstat()
        assert (facts.st_uid, facts.st_gid) == (NEW_UID, 0), path
    assert (stranger.stat().st_uid, stranger.stat().st_gid) == (1234, 5678)
    assert take_over(root, OLD, NEW_UID) == 0  # idempotent: an interrupted run finishes
