"""The host ID registry (idranges) and its locks, without containers: allocations never
overlap each other, foreign ranges or the pool bounds; they are stable, released and
reused; exhaustion is one clear error; two processes never corrupt or share a lock."""

from __future__ import annotations

import itertools
import multiprocessing
import random
import time
from pathlib import Path

import pytest

from ipabuild.core import locks
from ipabuild.core.errors import IpabuildError, UsageError
from ipabuild.core.hostids import USERNS_SIZE, legacy_uid, legacy_userns_base
from ipabuild.stack.idranges import (
    UID_POOL,
    Interval,
    Registry,
    StackIds,
    first_fit,
    subtract,
    volume_ids,
)

SUB_START = 2_147_483_647
SLOTS = 40  # a small `containers` range: churn reaches exhaustion often


def subids(tmp_path: Path, slots: int = SLOTS, extra: str = "") -> tuple[Path, Path]:
    files = []
    for kind in ("subuid", "subgid"):
        path = tmp_path / kind
        path.write_text(f"containers:{SUB_START}:{slots * USERNS_SIZE}\n{extra}")
        files.append(path)
    return files[0], files[1]


@pytest.fixture(autouse=True)
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(locks.STATE_ENV, str(tmp_path / "state"))
    return tmp_path / "state"


def registry(tmp_path: Path, slots: int = SLOTS, uids: int = 200, extra: str = "") -> Registry:
    return Registry(tmp_path / "state", subids(tmp_path, slots, extra),
                    Interval(UID_POOL.start, uids))


def assert_disjoint(intervals: list[Interval]) -> None:
    ordered = sorted(intervals)
    for before, after in itertools.pairwise(ordered):
        assert before.end <= after.start, f"{before.owner} {before} overlaps {after.owner} {after}"


def test_2000_allocations_with_churn_never_overlap(tmp_path: Path) -> None:
    """Property-style: random stacks come and go; after every step every recorded
    interval, the foreign ones and the pool bounds are respected."""
    rng = random.Random(10)
    foreign = [Interval(SUB_START + 7 * USERNS_SIZE + 5, 10, "another tool"),
               Interval(UID_POOL.start + 3, 1, "another container")]
    reg = registry(tmp_path, uids=400)
    alive: list[str] = []
    pool_end = SUB_START + SLOTS * USERNS_SIZE
    for step in range(2000):
        if alive and (rng.random() < 0.4 or len(alive) >= SLOTS - 2):
            reg.release(alive.pop(rng.randrange(len(alive))))
        name = f"s{step}"
        services = rng.sample(["a", "b", "c", "d"], rng.randint(0, 3))
        ids = reg.allocate(name, userns=rng.random() < 0.7, services=services,
                           foreign=lambda: list(foreign))
        if ids.userns or ids.uids:  # nothing needed, nothing recorded
            alive.append(name)
        recorded = reg.recorded()
        assert sorted(recorded) == sorted(alive)
        everything = [iv for n, ids in recorded.items() for iv in ids.intervals(n)]
        assert_disjoint(everything + foreign)
        for ids in recorded.values():
            if ids.userns:
                assert ids.userns.start >= SUB_START and ids.userns.end <= pool_end
            assert all(UID_POOL.start <= u < UID_POOL.start + 400 for u in ids.uids.values())


def test_release_and_reuse(tmp_path: Path) -> None:
    reg = registry(tmp_path)
    first = reg.allocate("one", userns=True, services=["a"])
    reg.allocate("two", userns=True, services=["a"])
    assert reg.release("one") == first
    assert reg.release("one") is None
    again = reg.allocate("three", userns=True, services=["a"])
    assert again.userns == first.userns and again.uids == first.uids


def test_userns_ranges_come_from_the_top_uids_from_the_bottom(tmp_path: Path) -> None:
    """Away from podman's --userns=auto, which takes the range from the bottom up."""
    ids = registry(tmp_path).allocate("t", userns=True, services=["a", "b"])
    assert ids.userns == Interval(SUB_START + (SLOTS - 1) * USERNS_SIZE, USERNS_SIZE)
    assert ids.uids == {"a": UID_POOL.start, "b": UID_POOL.start + 1}


def test_exhaustion_is_one_clear_error(tmp_path: Path) -> None:
    reg = registry(tmp_path, slots=2, uids=1)
    reg.allocate("one", userns=True, services=["a"])
    reg.allocate("two", userns=True, services=[])
    with pytest.raises(UsageError) as caught:
        reg.allocate("three", userns=True, services=[])
    message = caught.value.user_message()
    assert "no 65536 free host IDs left in the `containers` sub-ID range" in message
    assert "--volumes" in message and "/etc/subuid" in message and "\n" not in message
    with pytest.raises(UsageError, match="UID pool"):
        reg.allocate("two", userns=True, services=["b"])
    assert "three" not in reg.recorded()  # a failed allocation records nothing


def test_stable_across_calls_processes_and_new_services(tmp_path: Path) -> None:
    first = registry(tmp_path).allocate("t", userns=True, services=["a"])
    again = registry(tmp_path).allocate("t", userns=True, services=["a", "b"])
    assert again.userns == first.userns and again.uids["a"] == first.uids["a"]
    assert registry(tmp_path).allocate("t", userns=False, services=[]) == again


def test_foreign_ranges_and_other_users_subids_are_avoided(tmp_path: Path) -> None:
    top = SUB_START + (SLOTS - 1) * USERNS_SIZE
    reg = registry(tmp_path, extra=f"alice:{UID_POOL.start}:2\n")
    ids = reg.allocate("t", userns=True, services=["a"],
                       foreign=lambda: [Interval(top + 100, 1, "container auto")])
    assert ids.userns == Interval(top + 100 - USERNS_SIZE, USERNS_SIZE)
    assert ids.uids == {"a": UID_POOL.start + 2}


def test_a_requested_uid_is_recorded_and_checked_like_an_allocation(tmp_path: Path) -> None:
    """`up --uid SERVICE=UID` (an OpenShift-like assigned UID): kept across calls, refused
    when another stack, a container, a sub-ID range or the record disagrees."""
    reg = registry(tmp_path, extra="alice:1500000000:100\n")
    wanted = random.randint(1_000_000_000, 1_400_000_000)
    ids = reg.allocate("t", userns=False, services=["a", "b"], requested={"a": wanted})
    assert ids.uids["a"] == wanted and ids.uids["b"] == UID_POOL.start
    assert reg.allocate("t", userns=False, services=["a"], requested={"a": wanted}) == ids
    with pytest.raises(UsageError, match="which its volumes are owned by"):
        reg.allocate("t", userns=False, services=["a"], requested={"a": wanted + 1})
    with pytest.raises(UsageError, match="taken by stack 't' \\(a\\)"):
        reg.allocate("u", userns=False, services=["x"], requested={"x": wanted})
    with pytest.raises(UsageError, match=r"taken by .*entry for alice"):
        reg.allocate("u", userns=False, services=["x"], requested={"x": 1500000050})
    with pytest.raises(UsageError, match="taken by container c"):
        reg.allocate("u", userns=False, services=["x"], requested={"x": 7},
                     foreign=lambda: [Interval(5, 5, "container c")])
    with pytest.raises(UsageError, match="outside 1-2147483647"):
        reg.allocate("u", userns=False, services=["x"], requested={"x": 2**31})
    assert "u" not in reg.recorded()  # a refused request records nothing


def test_a_recorded_range_later_used_by_a_container_is_refused(tmp_path: Path) -> None:
    reg = registry(tmp_path)
    ids = reg.allocate("t", userns=True, services=[])
    assert ids.userns is not None
    squatter = Interval(ids.userns.start, 10, "container other-tool")
    with pytest.raises(IpabuildError, match="now used by container other-tool"):
        reg.allocate("t", userns=True, services=[], foreign=lambda: [squatter])


def test_missing_containers_entry_says_run_doctor(tmp_path: Path) -> None:
    (tmp_path / "subuid").write_text("")
    (tmp_path / "subgid").write_text("")
    reg = Registry(tmp_path / "state", (tmp_path / "subuid", tmp_path / "subgid"))
    with pytest.raises(UsageError, match="doctor --fix"):
        reg.allocate("t", userns=True, services=[])


def test_legacy_ids_are_kept_unless_they_collide(tmp_path: Path) -> None:
    """tenant0 and tenant51 got the same range from the old hash: the first keeps its
    volumes' IDs, the second is refused with the fix instead of sharing them."""
    assert legacy_userns_base("tenant0") == legacy_userns_base("tenant51")
    reg = registry(tmp_path)
    old = Interval(legacy_userns_base("tenant0"), USERNS_SIZE)
    kept = reg.allocate("tenant0", userns=True, services=["a"],
                        evidence=StackIds(old, {"a": 1_234_567_890}))
    assert kept.userns == old and kept.uids == {"a": 1_234_567_890}
    with pytest.raises(IpabuildError, match=r"tenant51.*down --name tenant51 --volumes"):
        reg.allocate("tenant51", userns=True, services=[], evidence=StackIds(old))
    fresh = reg.allocate("tenant51", userns=True, services=[])
    assert fresh.userns is not None and not fresh.userns.overlaps(old)


def test_corrupt_registry_is_a_clear_error(tmp_path: Path) -> None:
    reg = registry(tmp_path)
    reg.allocate("t", userns=False, services=["a"])
    reg.path.write_text("{not json")
    with pytest.raises(UsageError, match="is not an ipabuild ID registry"):
        reg.allocate("t", userns=False, services=["a"])


def test_subtract_and_first_fit() -> None:
    free = subtract([Interval(0, 100)], [Interval(10, 5), Interval(12, 10), Interval(90, 20)])
    assert free == [Interval(0, 10), Interval(22, 68)]
    assert first_fit(free, 11) == Interval(22, 11)
    assert first_fit(free, 11, from_top=True) == Interval(79, 11)
    assert first_fit(free, 69) is None


# --- two processes ------------------------------------------------------------------

def _hold(path: str, ready: multiprocessing.synchronize.Event, seconds: float) -> None:
    with locks.held(Path(path), "stack 'x'"):
        ready.set()
        time.sleep(seconds)


def _allocate_many(directory: str, files: tuple[str, str], prefix: str) -> None:
    reg = Registry(Path(directory), (Path(files[0]), Path(files[1])))
    for i in range(15):
        reg.allocate(f"{prefix}{i}", userns=True, services=["a"])


def test_a_held_lock_names_its_holder_at_once(tmp_path: Path) -> None:
    path = tmp_path / "stack.lock"
    ready = multiprocessing.Event()
    child = multiprocessing.Process(target=_hold, args=(str(path), ready, 1.5))
    child.start()
    try:
        assert ready.wait(10)
        started = time.monotonic()
        with pytest.raises(locks.Busy) as caught, locks.held(path, "stack 'x'", "wait"):
            pass
        assert time.monotonic() - started < 1
        assert caught.value.user_message() == f"stack 'x' is held by PID {child.pid} (fix: wait)"
    finally:
        child.join()
    with locks.held(path, "stack 'x'"):  # released when the holder ended
        pass


def test_waiting_for_a_lock_says_so(tmp_path: Path) -> None:
    path = tmp_path / "images.lock"
    ready = multiprocessing.Event()
    child = multiprocessing.Process(target=_hold, args=(str(path), ready, 1))
    child.start()
    waited: list[int | None] = []
    try:
        assert ready.wait(10)
        with locks.held(path, "the image store", on_wait=waited.append):
            pass
    finally:
        child.join()
    assert waited == [child.pid]


def test_concurrent_allocations_in_two_processes_stay_disjoint(tmp_path: Path) -> None:
    files = subids(tmp_path, slots=64)
    directory = tmp_path / "state"
    children = [multiprocessing.Process(target=_allocate_many,
                                        args=(str(directory), tuple(map(str, files)), p))
                for p in ("x", "y")]
    for child in children:
        child.start()
    for child in children:
        child.join()
        assert child.exitcode == 0
    recorded = Registry(directory, files).recorded()
    assert len(recorded) == 30  # no lost update
    assert_disjoint([iv for n, ids in recorded.items() for iv in ids.intervals(n)])


def test_images_waits_for_another_build(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ipabuild.build.images import ImageBuilder
    from ipabuild.build.results import BuildOptions
    from ipabuild.spec.load import load_project

    root = Path(__file__).resolve().parents[2]
    ready = multiprocessing.Event()
    child = multiprocessing.Process(target=_hold, args=(str(locks.images_lock()), ready, 1))
    child.start()
    try:
        assert ready.wait(10)
        project = load_project(root)
        builder = ImageBuilder(root, project, BuildOptions(project.default_family, "t"),
                               lambda _s, _m: None, tmp_path)
        assert builder.run([]) == []
    finally:
        child.join()
    assert f"waiting for the image build of PID {child.pid}" in capsys.readouterr().err


def test_volume_labels_say_what_a_volume_is_owned_by() -> None:
    assert volume_ids("uid=2000000007", "t", "a", False) == StackIds(uids={"a": 2000000007})
    assert volume_ids(f"userns=3000000000:{USERNS_SIZE}", "t", "a", True) == StackIds(
        Interval(3_000_000_000, USERNS_SIZE))
    # Made in a namespace the service no longer runs in (the CA's former root init): no
    # UID to keep; up allocates one and takes the files over.
    assert volume_ids(f"userns=3000000000:{USERNS_SIZE}", "t", "a", False) == StackIds()
    # No label: the volume was made before the registry, for the old hash's IDs.
    assert volume_ids("", "t", "a", False) == StackIds(uids={"a": legacy_uid("t", "a")})
    assert volume_ids("", "t", "a", True) == StackIds(
        Interval(legacy_userns_base("t"), USERNS_SIZE))
