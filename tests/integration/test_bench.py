"""The comparison bench (bench/compare.py) runs end to end at a tiny size against the
shared split stack and the shared monolith: its load generators log in and bind for real
in both modes, the baseline MIT KDC starts and serves its own realm. The figures come
from the bench, not from this test."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.integration.conftest import ROOT


def test_the_comparison_bench_measures_both_modes_and_the_baseline(stack: str,
                                                                    monolith: str) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "compare.py"), "--reuse", "--name", stack,
         "--monolith-name", monolith, "--users", "3", "--procs", "2", "--seconds", "2",
         "--json"],
        capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = json.loads(result.stdout.strip().splitlines()[-1])
    for mode in ("split", "monolithic"):  # every login succeeded (load.py exit 0)
        assert rows["kinit_per_s"][mode] > 0 and rows["ldap_per_s"][mode] > 0, rows
        assert rows["idle_rss_mib"][mode] > 100, rows
    assert rows["kinit_per_s"]["baseline"] > 0, rows
    assert rows["ldap_per_s"]["split"] > 0, rows
    assert 0 < rows["user_add_p50_ms"]["split"] <= rows["user_add_p95_ms"]["split"], rows
    assert rows["idle_rss_mib"]["split"] > 100 and rows["loaded_rss_mib"]["split"] > 100, rows
    assert "first_up_s" not in rows  # --reuse: the stack is measured, never restarted
    leftover = subprocess.run(["podman", "ps", "-a", "--format", "{{.Names}}"],
                              capture_output=True, text=True, check=True).stdout
    assert "bench-mitkdc" not in leftover, leftover
