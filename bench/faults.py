"""Faults under load: a steady stream of kinit, LDAP searches and authenticated HTTPS API
calls against a running split stack while each service in turn is killed with SIGKILL.
Not a test: prints figures (recorded in docs/performance.md with this command).

    ipabuild up --name faults && python3 bench/faults.py --name faults

Per service: requests failed during the outage, the time to recover (from the kill to
the first round in which every probe succeeded again), requests failed after recovery
(must be 0), whether the service came back by itself (its restart policy), and data lost
(must be 0): users, Kerberos principals and issued certificates, counted in the directory
before and after. The probes run in the client toolbox (bench/inside/fault_probe.py).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBES = ("kinit", "ldap", "https")
COUNTS = ("users", "principals", "certificates")
COUNT_SCRIPT = (
    'printf %s "$DM" >/tmp/dm && for what in users principals certificates; do case $what in '
    'users) base="cn=users,cn=accounts,$IPA_SUFFIX"; f="(uid=*)"; scope=one;; '
    'principals) base="$IPA_SUFFIX"; f="(krbPrincipalName=*)"; scope=sub;; '
    'certificates) base="ou=certificateRepository,ou=ca,o=ipaca"; f="(objectClass=*)"; '
    'scope=one;; esac; '
    'n=$(ldapsearch -LLL -x -H ldap://ldap.$IPA_DOMAIN:3389 -D "cn=Directory Manager" '
    '-y /tmp/dm -b "$base" -s $scope "$f" 1.1 | grep -c "^dn:"); '
    'echo "$what=$n"; done')


@dataclass
class Sample:
    t: float
    probe: str
    ok: bool


@dataclass
class Outcome:
    service: str
    killed_at: float
    restarted_by_itself: bool
    recovered_at: float | None = None
    settled_at: float = 0.0
    failed_during: dict[str, int] = field(default_factory=dict)
    failed_after: dict[str, int] = field(default_factory=dict)

    @property
    def recovery_s(self) -> float | None:
        return None if self.recovered_at is None else self.recovered_at - self.killed_at


def secret(stack: str, name: str) -> str:
    return (ROOT / ".ipabuild" / "secrets" / stack / name).read_text().strip()


def client_argv(stack: str, *command: str) -> list[str]:
    return [sys.executable, "-m", "ipabuild.cli", "--root", str(ROOT), "client", "--name",
            stack, "-v", f"{ROOT / 'bench' / 'inside'}:/bench:ro", "-e", "PW", "-e", "DM",
            "--", *command]


def count_data(stack: str, env: dict[str, str]) -> dict[str, int]:
    done = subprocess.run(client_argv(stack, "bash", "-c", COUNT_SCRIPT), capture_output=True,
                          text=True, env=env, timeout=120, check=False)
    counts = dict(line.split("=", 1) for line in done.stdout.split() if "=" in line)
    if set(counts) != set(COUNTS):
        raise SystemExit(f"counting data failed: {done.stdout[-500:]}{done.stderr[-1500:]}")
    return {name: int(value) for name, value in counts.items()}


def healthy(container: str) -> bool:
    return subprocess.run(["podman", "healthcheck", "run", container], capture_output=True,
                          check=False).returncode == 0


def running(container: str) -> bool:
    state = subprocess.run(["podman", "inspect", "--format", "{{.State.Running}}", container],
                           capture_output=True, text=True, check=False).stdout.strip()
    return state == "true"


def kill_and_wait(container: str, stack: str, timeout: float) -> bool:
    """SIGKILL the container's init from the host (the whole container dies, as in a
    crash; `podman kill` would count as a user's stop, which no restart policy undoes);
    True if its restart policy brought it back, else `ipabuild up` recovers it (what a
    user runs: it remakes what is not healthy and keeps the rest)."""
    pid = int(subprocess.run(["podman", "inspect", "--format", "{{.State.Pid}}", container],
                             capture_output=True, text=True, check=True).stdout)
    os.kill(pid, signal.SIGKILL)
    time.sleep(1)
    deadline = time.monotonic() + 30
    while not running(container) and time.monotonic() < deadline:
        time.sleep(0.5)
    by_itself = running(container)
    if not by_itself:
        subprocess.run([sys.executable, "-m", "ipabuild.cli", "--root", str(ROOT), "up",
                        "--name", stack], capture_output=True, check=False)
    deadline = time.monotonic() + timeout
    while not healthy(container) and time.monotonic() < deadline:
        time.sleep(0.5)
    return by_itself


def analyse(outcome: Outcome, samples: list[Sample]) -> None:
    window = [s for s in samples if outcome.killed_at <= s.t <= outcome.settled_at]
    last_ok: dict[str, float] = {}
    for sample in window:  # the first moment after which every probe has succeeded
        if sample.ok and sample.probe not in last_ok:
            last_ok[sample.probe] = sample.t
        if not sample.ok:
            last_ok.pop(sample.probe, None)
    if set(last_ok) == set(PROBES):
        outcome.recovered_at = max(last_ok.values())
    cut = outcome.recovered_at or outcome.settled_at
    for probe in PROBES:
        outcome.failed_during[probe] = sum(1 for s in window if s.probe == probe
                                           and not s.ok and s.t < cut)
        outcome.failed_after[probe] = sum(1 for s in window if s.probe == probe
                                          and not s.ok and s.t >= cut)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="faults", help="running split stack")
    parser.add_argument("--services", default="ldap,kdc,ca,http")
    parser.add_argument("--settle", type=float, default=20.0,
                        help="seconds of load after a service is healthy again")
    parser.add_argument("--recover-timeout", type=float, default=240.0)
    args = parser.parse_args()
    env = {**os.environ, "PW": secret(args.name, "admin-password"),
           "DM": secret(args.name, "ldap-dm-password")}
    before = count_data(args.name, env)

    samples: list[Sample] = []
    probe = subprocess.Popen(client_argv(args.name, "python3", "/bench/fault_probe.py", "0.2"),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, env=env)

    def read() -> None:
        assert probe.stdout is not None
        for line in probe.stdout:
            try:
                item = json.loads(line)
            except ValueError:
                continue
            samples.append(Sample(item["t"], item["probe"], item["ok"]))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(10)  # warm up: every probe succeeds before the first kill
    outcomes = []
    try:
        for service in args.services.split(","):
            container = f"ipabuild-{args.name}-{service}"
            outcome = Outcome(service, time.time(), False)
            outcome.restarted_by_itself = kill_and_wait(container, args.name, args.recover_timeout)
            time.sleep(args.settle)
            outcome.settled_at = time.time()
            analyse(outcome, list(samples))
            outcomes.append(outcome)
    finally:
        assert probe.stdin is not None
        probe.stdin.close()  # the probe stops at the end of its input
        probe.wait(timeout=60)
    after = count_data(args.name, env)

    print(f"{'service':8} {'restarted':10} {'recovery s':>10}  failed during outage "
          f"(kinit/ldap/https)  failed after recovery")
    for o in outcomes:
        recovery = f"{o.recovery_s:.1f}" if o.recovery_s is not None else "never"
        during = "/".join(str(o.failed_during[p]) for p in PROBES)
        later = "/".join(str(o.failed_after[p]) for p in PROBES)
        print(f"{o.service:8} {'by itself' if o.restarted_by_itself else 'ipabuild up':11} "
              f"{recovery:>10}  {during:36} {later}")
    lost = {name: before[name] - after[name] for name in COUNTS}
    print(f"probes sent: {len(samples)}; data before {before}, after {after}, lost {lost}")
    bad = any(sum(o.failed_after.values()) for o in outcomes) or any(lost.values()) or any(
        o.recovered_at is None for o in outcomes)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
