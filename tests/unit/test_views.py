"""A daemon's own view (ipabuild.proof.views): where it sees a file its container sees,
from mountinfo, confirmed by the file's identity; nothing when it cannot see it."""

from __future__ import annotations

import os
from pathlib import Path

from ipabuild.proof.views import candidates, in_file_system, parse_mountinfo, translate

# The container's PID 1 and a service chrooted into /srv/ldap with one directory of the
# data volume and a tmpfs of its own (as the monolith's supervisor binds them).
CONTAINER = """\
1 0 0:41 / / rw - overlay overlay rw
2 1 254:0 /var/lib/volumes/m-data/_data /data rw - ext4 /dev/vda1 rw
3 1 0:46 / /run rw - tmpfs tmpfs rw
4 3 0:50 / /run/secrets rw - tmpfs tmpfs rw
"""
CHROOTED = """\
10 9 0:46 /ipabuild-monolith/ldap/tmpfs/run /run rw - tmpfs tmpfs rw
11 9 254:0 /var/lib/volumes/m-data/_data/ldap/data /data rw - ext4 /dev/vda1 rw
12 9 0:46 /ipabuild-monolith/ldap/volumes/ldapi /run/ipa\\040ldapi rw - tmpfs tmpfs rw
"""


def test_a_path_is_named_by_its_file_system_and_the_mount_on_top() -> None:
    mounts = parse_mountinfo(CONTAINER)
    assert in_file_system("/data/ldap/data/key4.db", mounts) == (
        "254:0", "/var/lib/volumes/m-data/_data/ldap/data/key4.db")
    assert in_file_system("/run/secrets/dm", mounts) == ("0:50", "/dm")
    assert in_file_system("/etc/passwd", mounts) == ("0:41", "/etc/passwd")


def test_a_chrooted_view_sees_its_own_binds_only() -> None:
    mounts = parse_mountinfo(CHROOTED)
    assert mounts[2].point == "/run/ipa ldapi"  # mountinfo's octal escapes undone
    assert candidates("254:0", "/var/lib/volumes/m-data/_data/ldap/data/key4.db",
                      mounts) == ["/data/key4.db"]
    assert candidates("0:46", "/ipabuild-monolith/ldap/volumes/ldapi/sock", mounts) == [
        "/run/ipa ldapi/sock"]
    # Another service's volume directory and the container's own secrets: not in view.
    assert candidates("254:0", "/var/lib/volumes/m-data/_data/kdc/stash", mounts) == []
    assert candidates("0:50", "/dm", mounts) == []


def test_translate_confirms_the_file_itself(tmp_path: Path) -> None:
    """The same process on both sides sees each file where it is; a path that names
    nothing has no place in any view."""
    me = os.getpid()
    (tmp_path / "f").write_text("x")
    assert translate(me, me, str(tmp_path / "f")) == str(tmp_path / "f")
    assert translate(me, me, str(tmp_path / "missing")) is None
