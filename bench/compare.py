"""Split FreeIPA beside the monolith (the same services in one container, root inside)
and beside what FreeIPA's layers cost, in one run: first ``up``, restart, idle and loaded
RSS, kinit with pre-authentication per second from N parallel clients, LDAP bind+search
per second over one persistent connection, ``ipa user-add`` p50/p95 and ``user-find``
p50 for each mode, and the baselines: MIT's KDC on its own db2 database for kinit, a
plain 389-ds for LDAP. Not a test: prints figures (recorded in docs/performance.md with
the command).

    python3 bench/compare.py [--name compare] [--users 1000] [--procs 8] [--seconds 20]
    python3 bench/compare.py --reuse --name ipa --monolith-name mono   # running stacks
    python3 bench/compare.py --modes split                              # one mode only

The load runs in the client toolbox on each stack's network (bench/inside/load.py): one
process per client, each login or bind in that process, so the figures are the server's,
not process start-up's. The modes are measured one after the other, never at once.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from stack_bench import tree_rss_kib  # noqa: E402

SUFFIX = "dc=example,dc=test"
REALM = "EXAMPLE.TEST"
BASELINE_REALM = "BENCH.TEST"
# The kdc service's own name and port (services/kdc/service.yaml), in either mode.
KDC_DIRECT = "kdc.example.test:8088"
# Targets of issue 21 (2-core machine): figure -> (comparison, bound).
TARGETS = {"kinit_per_s": (">=", 500.0), "ldap_per_s": (">=", 2000.0),
           "user_add_p50_ms": ("<=", 300.0)}


def ipabuild(*args: str, env: dict[str, str] | None = None,
             timeout: float = 3600) -> tuple[float, subprocess.CompletedProcess]:
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "ipabuild.cli", "--root", str(ROOT), *args],
                            capture_output=True, text=True, check=False, input="",
                            env={**os.environ, **(env or {})}, timeout=timeout)
    return time.monotonic() - started, result


def in_toolbox(stack: str, script: str, mounts: dict[str, str] | None = None,
               env: dict[str, str] | None = None) -> dict:
    """``script`` in the client toolbox, admin's ticket first; its last line as JSON."""
    password = (ROOT / ".ipabuild" / "secrets" / stack / "admin-password").read_text().strip()
    args = ["client", "--name", stack, "-v", f"{ROOT / 'bench' / 'inside'}:/bench:ro", "-e", "PW"]
    for host, inside in (mounts or {}).items():
        args += ["-v", f"{host}:{inside}:ro"]
    for name in env or {}:
        args += ["-e", name]
    _, result = ipabuild(*args, "--", "sh", "-c",
                         f'printf "%s" "$PW" | kinit admin >/dev/null && {script}',
                         env={"PW": password, **(env or {})})
    lines = result.stdout.strip().splitlines()
    if not lines:
        raise SystemExit(f"toolbox: {script}\n{result.stderr[-3000:]}")
    figures = json.loads(lines[-1])
    if result.returncode != 0:
        raise SystemExit(f"toolbox: {script} failed: {figures}\n{result.stderr[-2000:]}")
    return figures


def stack_rss_mib(stack: str) -> float:
    _, status = ipabuild("status", "--name", stack, "--json")
    return sum(tree_rss_kib(row["host_pid"]) for row in json.loads(status.stdout)
               if row["host_pid"]) / 1024


def while_loaded(stack: str, run: Callable[[], dict]) -> tuple[dict, float]:
    """``run()``'s figures and the stack's RSS while it ran (the highest sample; the
    first is taken as the toolbox starts, so a short load has one too)."""
    samples: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while True:  # once at once (the load has begun), then every second until it ends
            samples.append(stack_rss_mib(stack))
            if stop.wait(1.0):
                return
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        figures = run()
    finally:
        stop.set()
        sampler.join()
    return figures, max(samples, default=0.0)


MIT_KDC_SCRIPT = """set -e
IPABUILD_SERVICE=bench-mitkdc; . /usr/local/lib/ipabuild/lib.sh; ipabuild_ensure_user
d=/tmp/mit; mkdir -p $d
cat >$d/krb5.conf <<EOF
[libdefaults]
 default_realm = {realm}
[realms]
 {realm} = {{
  kdc = localhost:8088
 }}
EOF
# The ipa-kdb KDC's own settings (services/kdc/kdc.conf.j2), its database aside.
cat >$d/kdc.conf <<EOF
[kdcdefaults]
 kdc_ports = 8088
 kdc_tcp_ports = 8088
 spake_preauth_kdc_challenge = edwards25519
[realms]
 {realm} = {{
  database_name = $d/principal
  key_stash_file = $d/stash
  acl_file = $d/kadm5.acl
  master_key_type = aes256-cts
  supported_enctypes = aes256-sha2:special aes128-sha2:special aes256-cts:special aes128-cts:special
  default_principal_flags = +preauth
 }}
[logging]
 kdc = STDERR
EOF
: >$d/kadm5.acl
export KRB5_CONFIG=$d/krb5.conf KRB5_KDC_PROFILE=$d/kdc.conf
kdb5_util create -s -r {realm} -P "$(head -c 24 /dev/urandom | base64)" >/dev/null
for n in $(seq 0 {last}); do
  kadmin.local -q "addprinc -pw Base-$n +requires_preauth user$n" >/dev/null
done
echo ready
exec krb5kdc -n
"""


PLAIN_389_SCRIPT = """set -e
IPABUILD_SERVICE=bench-389ds; . /usr/local/lib/ipabuild/lib.sh; ipabuild_ensure_user
# The ldap image's own instance settings (services/ldap/instance.inf.j2), without any of
# FreeIPA's directory steps: stock 389-ds and its default plugins.
mkdir -p /data/etc/default /data/config /data/db /data/run/lock /data/log
cp -r /usr/share/ipabuild/dirsrv-etc /data/etc/dirsrv
inf=/data/config/container.inf  # configparser: '%' is written '%%'
printf '[localhost]\\nldapi = ldapi://%%%%2Ftmp%%%%2Fslapd-BENCH.socket\\n' >$inf
pw=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
sed -e "s/@INSTANCE@/BENCH/g" -e "s/@USER@/$(id -un)/" -e "s/@GROUP@/$(id -gn)/" \\
    -e "s/@DM_PASSWORD@/$pw/" -e "s#^ldapi = .*#ldapi = /tmp/slapd-BENCH.socket#" \\
    /usr/share/ipabuild/instance.inf.in >/tmp/bench.inf
dscreate -j from-file /tmp/bench.inf >/dev/null
/usr/sbin/ns-slapd -D /etc/dirsrv/slapd-BENCH -i /data/run/slapd.pid -d 0 &
until ldapsearch -x -H ldap://localhost:13389 -s base -b "" >/dev/null 2>&1; do sleep 0.2; done
entry() {{ printf 'dn: %s\\nobjectClass: top\\n' "$1"; shift; printf '%s\\n' "$@" ""; }}
{{
  ldapsearch -x -H ldap://localhost:13389 -s base -b "{suffix}" >/dev/null 2>&1 ||
    entry "{suffix}" "objectClass: domain" "dc: example"
  entry "ou=people,{suffix}" "objectClass: organizationalUnit" "ou: people"
  for n in $(seq 0 {last}); do
    entry "uid=user$n,ou=people,{suffix}" "objectClass: inetOrgPerson" "uid: user$n" \\
      "cn: User $n" "sn: $n" "userPassword: Base-$n"
  done
}} | ldapadd -x -H ldap://localhost:13389 -D "cn=Directory Manager" -w "$pw" >/dev/null
echo ready
wait
"""


class BaselineContainer:
    """A baseline server in a container of one of the stack's images on the stack's
    network, set up by ``script`` (it prints 'ready'); its address on entry."""

    def __init__(self, stack: str, role: str, image: str, script: str,
                 tmpfs: tuple[str, ...]) -> None:
        self.stack, self.image, self.script, self.tmpfs = stack, image, script, tmpfs
        self.name = f"ipabuild-{stack}-bench-{role}"

    def __enter__(self) -> str:
        subprocess.run(["podman", "rm", "-f", self.name], capture_output=True, check=False)
        mounts = [arg for path in self.tmpfs for arg in ("--tmpfs", path)]
        subprocess.run(["podman", "run", "-d", "--name", self.name, "--network",
                        f"ipabuild-{self.stack}", "--user", "12345:0", "--read-only",
                        *mounts, "--cap-drop", "all", "--entrypoint", "bash",
                        f"localhost/ipabuild/{self.image}:latest", "-c", self.script],
                       capture_output=True, text=True, check=True)
        deadline = time.monotonic() + 120
        while "ready" not in subprocess.run(["podman", "logs", self.name], capture_output=True,
                                            text=True, check=False).stdout:
            if time.monotonic() > deadline:
                logs = subprocess.run(["podman", "logs", self.name], capture_output=True,
                                      text=True, check=False)
                self.__exit__()
                raise SystemExit(f"{self.name} did not start:\n{logs.stderr[-2000:]}")
            time.sleep(0.5)
        time.sleep(1)  # the daemon binds its ports just after the script says ready
        return subprocess.run(["podman", "inspect", self.name, "--format",
                               "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"],
                              capture_output=True, text=True, check=True).stdout.strip()

    def __exit__(self, *_exc: object) -> None:
        subprocess.run(["podman", "rm", "-f", self.name], capture_output=True, check=False)


MODES = ("split", "monolithic")


def measure_mode(stack: str, mode: str, args: argparse.Namespace,
                 rows: dict[str, dict[str, float | str]]) -> int:
    """Every figure of one mode's stack into ``rows[figure][mode]``; returns how many
    client processes the loads used."""
    def put(key: str, value: float | str) -> None:
        rows.setdefault(key, {})[mode] = value

    if not args.reuse:
        ipabuild("down", "--name", stack, "--volumes")
        seconds, result = ipabuild("up", "--name", stack, "--mode", mode)
        if result.returncode != 0:
            raise SystemExit(result.stderr[-3000:])
        put("first_up_s", round(seconds, 1))
        restarts = []
        for _ in range(3):
            ipabuild("down", "--name", stack)
            seconds, result = ipabuild("up", "--name", stack, "--mode", mode)
            if result.returncode != 0:
                raise SystemExit(result.stderr[-3000:])
            restarts.append(seconds)
        put("restart_s", round(statistics.median(restarts), 1))
        time.sleep(10)
    put("idle_rss_mib", round(stack_rss_mib(stack), 1))

    prefix = f"cmp{uuid.uuid4().hex[:4]}u"
    api = in_toolbox(stack, f"python3 /bench/ipa_api_load.py {args.users} {prefix}")
    for key in ("user_add_p50_ms", "user_add_p95_ms", "user_find_p50_ms"):
        put(key, api[key])
    # ipa_api_load.py gave its first min(users, 50) users a password of their own (the
    # first login's change): those log in below, one user per client process.
    procs = min(args.procs, args.users, 50)
    kinit_load = (f"python3 /bench/load.py kinit {REALM} '{prefix}{{n}}' "
                  f"'New-{prefix}-{{n}}' {procs} {args.seconds}")
    # A short warm-up first: the first load after the users were added ran at half the
    # rate of a second one (91 against 172-248 logins/s, measured), whichever came first.
    in_toolbox(stack, kinit_load.replace(f" {args.seconds}", f" {min(5.0, args.seconds)}"),
               env={"IPA_KDC": KDC_DIRECT})
    # Straight to the kdc service in both modes: in a cluster the server name is a
    # Service that routes to the kdc pod with no proxy in between.
    kinit, loaded = while_loaded(stack, lambda: in_toolbox(
        stack, kinit_load, env={"IPA_KDC": KDC_DIRECT}))
    put("kinit_per_s", kinit["per_s"])
    put("loaded_rss_mib", round(loaded, 1))
    # And through the local stack's proxy for the server name, as its clients go (both
    # modes have it in front).
    put("kinit_front_per_s", in_toolbox(stack, kinit_load)["per_s"])
    ldap = in_toolbox(
        stack, f"python3 /bench/load.py ldap ldap://ldap.example.test:3389 "
               f"'uid={prefix}{{n}},cn=users,cn=accounts,{SUFFIX}' 'New-{prefix}-{{n}}' "
               f"1 {args.seconds}")
    put("ldap_per_s", ldap["per_s"])
    return procs


def measure(args: argparse.Namespace) -> dict[str, dict[str, float | str]]:
    """Every figure, by row: {'split': ..., 'monolithic': ..., 'baseline': ...}."""
    rows: dict[str, dict[str, float | str]] = {}
    procs = 0
    for mode in args.modes:
        procs = measure_mode(stack_of(args, mode), mode, args, rows)
    name = stack_of(args, args.modes[0])  # the baselines join the first mode's network
    mit_kdc = BaselineContainer(name, "mitkdc", "kdc", MIT_KDC_SCRIPT.format(
        realm=BASELINE_REALM, last=procs - 1), ("/tmp",))
    with mit_kdc as address, tempfile.TemporaryDirectory() as conf:
        Path(conf, "krb5.conf").write_text(
            f"[libdefaults]\n default_realm = {BASELINE_REALM}\n dns_lookup_kdc = false\n"
            f"[realms]\n {BASELINE_REALM} = {{\n  kdc = {address}:8088\n }}\n")
        os.chmod(conf, 0o755)
        os.chmod(Path(conf, "krb5.conf"), 0o644)
        base = in_toolbox(name, f"python3 /bench/load.py kinit {BASELINE_REALM} 'user{{n}}' "
                                f"'Base-{{n}}' {procs} {args.seconds}",
                          mounts={conf: "/bench-mit"},
                          env={"LOAD_KRB5_CONFIG": "/bench-mit/krb5.conf"})
    rows["kinit_per_s"]["baseline"] = base["per_s"]
    plain = BaselineContainer(name, "389ds", "ldap", PLAIN_389_SCRIPT.format(
        suffix=SUFFIX, last=0), ("/tmp", "/data"))
    with plain as address:
        base = in_toolbox(name, f"python3 /bench/load.py ldap ldap://{address}:13389 "
                                f"'uid=user{{n}},ou=people,{SUFFIX}' 'Base-{{n}}' 1 {args.seconds}")
    rows["ldap_per_s"]["baseline"] = base["per_s"]
    rows["_load"] = {"split": f"{procs} client processes, {args.seconds} s each load, "
                              f"{args.users} users"}
    return rows


def stack_of(args: argparse.Namespace, mode: str) -> str:
    return str(args.name if mode == "split" else args.monolith_name or f"{args.name}-mono")


LABELS = {"first_up_s": "first `up` (s)", "restart_s": "`up` on existing volumes (s, median of 3)",
          "idle_rss_mib": "idle RSS (MiB)", "loaded_rss_mib": "RSS under kinit load (MiB)",
          "kinit_per_s": "kinit with pre-auth per second (to the kdc service)",
          "kinit_front_per_s": "kinit with pre-auth per second (through the local front proxy)",
          "ldap_per_s":
          "LDAP bind+search per second (one connection)", "user_add_p50_ms":
          "`ipa user-add` p50 (ms)", "user_add_p95_ms": "`ipa user-add` p95 (ms)",
          "user_find_p50_ms": "`ipa user-find` p50 (ms)"}


def _ratio(split: float | str, monolith: float | str) -> str:
    if isinstance(split, (int, float)) and isinstance(monolith, (int, float)) and monolith:
        return f"{split / monolith:.2f}"
    return "—"


def table(rows: dict[str, dict[str, float | str]]) -> str:
    lines = ["| figure | split | monolith | split ÷ monolith | baseline | target |",
             "|---|---|---|---|---|---|"]
    for key, label in LABELS.items():
        if key not in rows:
            continue
        split = rows[key].get("split", "not measured")
        monolith = rows[key].get("monolithic", "not measured")
        target = ""
        if key in TARGETS and isinstance(split, (int, float)):
            how, bound = TARGETS[key]
            met = split >= bound if how == ">=" else split <= bound
            target = f"{how} {bound:g}: {'met' if met else 'missed'}"
        baseline = rows[key].get("baseline", "")
        lines.append(f"| {label} | {split} | {monolith} | {_ratio(split, monolith)} | "
                     f"{baseline} | {target} |")
    lines.append("")
    lines.append(f"Load: {rows['_load']['split']}. Monolith: split mode's services in one "
                 f"container under its supervisor (services/monolithic), root inside. "
                 f"Baselines: MIT's KDC on its own db2 database with the ipa-kdb KDC's "
                 f"settings (kinit); 389-ds with the ldap image's instance settings and "
                 f"none of FreeIPA's plugins (LDAP).")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="compare", help="stack name (default: compare)")
    parser.add_argument("--reuse", action="store_true",
                        help="measure the running stacks; no up/down figures, no cleanup")
    parser.add_argument("--monolith-name", default="",
                        help="the monolith's stack name (default: NAME-mono)")
    parser.add_argument("--modes", default=",".join(MODES),
                        help="modes to measure, comma-separated (default: split,monolithic)")
    parser.add_argument("--users", type=int, default=1000, help="users `ipa user-add` adds")
    parser.add_argument("--procs", type=int, default=8, help="parallel client processes")
    parser.add_argument("--seconds", type=float, default=20, help="length of each load")
    parser.add_argument("--json", action="store_true", help="the figures as JSON")
    args = parser.parse_args()
    args.modes = [m for m in args.modes.split(",") if m]
    if not args.modes or set(args.modes) - set(MODES):
        parser.error(f"--modes takes {', '.join(MODES)}")
    try:
        rows = measure(args)
    finally:
        if not args.reuse:
            for mode in args.modes:
                ipabuild("down", "--name", stack_of(args, mode), "--volumes")
    print(json.dumps(rows) if args.json else table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
