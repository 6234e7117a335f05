"""bench/compare.py's table: every measured figure in a row, the issue's targets judged,
split ÷ monolith where both were measured, and a mode not measured said so rather than
left to look like a zero."""

from __future__ import annotations

from service_modules import load

compare = load("bench/compare.py")


def test_targets_are_judged_and_an_unmeasured_monolith_is_not_claimed() -> None:
    rows = {"kinit_per_s": {"split": 512.3, "baseline": 900.0},
            "ldap_per_s": {"split": 1500.0, "baseline": 2500.0},
            "user_add_p50_ms": {"split": 310.0},
            "_load": {"split": "8 client processes, 20 s each load, 1000 users"}}
    text = compare.table(rows)
    lines = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines()}
    assert ">= 500: met" in lines["kinit with pre-auth per second (to the kdc service)"]
    assert "| 900.0 |" in lines["kinit with pre-auth per second (to the kdc service)"]
    assert ">= 2000: missed" in lines["LDAP bind+search per second (one connection)"]
    assert "<= 300: missed" in lines["`ipa user-add` p50 (ms)"]
    assert all("not measured" in line for key, line in lines.items() if key in (
        "kinit with pre-auth per second (to the kdc service)", "`ipa user-add` p50 (ms)"))
    assert "first `up` (s)" not in lines  # not measured (--reuse): no row
    assert "8 client processes" in text


def test_split_is_divided_by_the_monolith() -> None:
    rows = {"kinit_per_s": {"split": 90.0, "monolithic": 100.0, "baseline": 400.0},
            "idle_rss_mib": {"split": 720.0, "monolithic": 600.0},
            "_load": {"split": "8 client processes, 20 s each load, 1000 users"}}
    lines = {line.split(" | ")[0].lstrip("| "): line for line in compare.table(rows).splitlines()}
    assert "| 90.0 | 100.0 | 0.90 | 400.0 | >= 500: missed |" in lines[
        "kinit with pre-auth per second (to the kdc service)"]
    assert "| 720.0 | 600.0 | 1.20 |" in lines["idle RSS (MiB)"]
