"""The monolith's supervisor: FreeIPA's split services in one container, as upstream's
monolith runs its daemons under systemd.

Each service is its split image's own tree, copied whole under ``/srv/<service>`` at
build time (``runs`` in the monolith's spec; the builder writes what this needs of each
spec to ``/usr/share/ipabuild/monolith.json``). So both modes run the same build of
FreeIPA, with no file written twice. The supervisor starts every service from its tree:
in a mount namespace of its own, chrooted, as upstream's user for those daemons (root for
the KDC and httpd's master): monolith_trees.py. Dogtag's bullseye tree runs beside
trixie's this way. This module decides when: the order, restarts, the stop.

Commands (the entrypoint runs ``run``; the healthcheck ``health``):
  run                start every service in dependency order; start one that ended
                     again (5 times a minute at most), then stop all
  health             every service's own healthcheck, inside its tree
  exec NAME -- CMD   run CMD inside the running service NAME's tree, as its user, with its
                     environment (``podman exec CONTAINER ipabuild-monolith exec ldap --
                     ldapsearch ...``)
  mountpoints        (build time) create the mount points the trees lack
  enter NAME -- CMD  (internal) bind, chroot and exec CMD as NAME's user
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from monolith_trees import (  # installed beside this file
    Part,
    enter,
    identity_map_size,
    join,
    load,
    log,
    make_mountpoints,
    prepare,
)

STOP_SECONDS = 30


def in_namespace(subcommand: str, part: Part, argv: list[str]) -> list[str]:
    """The command line that runs ``argv`` in ``part``'s tree (``enter``: new namespaces)."""
    own = [sys.executable, os.path.abspath(__file__), subcommand, part.name, "--", *argv]
    if subcommand != "enter":
        return own
    size = identity_map_size()
    return ["unshare", "--user", "--mount", f"--map-users=0:0:{size}",
            f"--map-groups=0:0:{size}", "--setgroups=allow", *own]


def healthy(part: Part) -> bool:
    if not part.healthcheck:
        return part.process is not None and part.process.poll() is None
    try:
        result = subprocess.run(in_namespace("exec", part, part.healthcheck),
                                capture_output=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0


RESTART_DELAY = 1.0
READY_POLL = 0.25  # as `ipabuild up` polls a split stack's health


@dataclass
class RestartBudget:
    """systemd's start limit: a service that ended is started again, unless it has been
    started ``burst`` times within ``window`` seconds (then it is failing, and the
    container ends, so its restart policy or the kubelet takes over)."""

    burst: int = 5
    window: float = 60.0
    starts: list[float] = field(default_factory=list)

    def allows(self, now: float) -> bool:
        self.starts = [t for t in self.starts if now - t < self.window] + [now]
        return len(self.starts) <= self.burst


class Supervisor:
    """Starts the parts in dependency order, starts one that ended again (within a
    start limit), and ends all when one keeps failing or its init step fails."""

    def __init__(self, parts: list[Part]) -> None:
        self.parts = parts
        self.started: set[str] = set()
        self.healthy: set[str] = set()
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.ended: tuple[str, int] | None = None

    def spawn(self, part: Part, argv: list[str], label: str) -> subprocess.Popen:
        process = subprocess.Popen(in_namespace("enter", part, argv), stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        assert process.stdout is not None
        threading.Thread(target=self.relay, args=(label, process.stdout), daemon=True).start()
        return process

    @staticmethod
    def relay(label: str, stream) -> None:  # type: ignore[no-untyped-def]
        for line in iter(stream.readline, b""):
            sys.stdout.buffer.write(label.encode() + b" | " + line)
            sys.stdout.flush()

    def ready(self, part: Part) -> bool:
        for service, condition in part.depends_on.items():
            if service not in self.started:
                return False
            if condition == "healthy" and service not in self.healthy:
                dependency = next(p for p in self.parts if p.name == service)
                if not healthy(dependency):
                    return False
                self.healthy.add(service)
        return True

    def bring_up(self, part: Part) -> None:
        """Wait for the part's dependencies, run its init step, start it."""
        while not self.stopping.is_set() and not self.ready(part):
            time.sleep(READY_POLL)
        if self.stopping.is_set():
            return
        if part.init:
            log(f"{part.name}: init ({' '.join(part.init)}) as {part.user}")
            with self.lock:  # held as the part's process, so that a stop ends it too
                if self.stopping.is_set():
                    return
                init = part.process = self.spawn(part, part.init, f"{part.name}-init")
            status = init.wait()
            if status != 0:
                self.end(part.name + " init", status)
                return
        starts = RestartBudget()
        while True:
            log(f"{part.name}: starting {' '.join(part.command)} as {part.user} "
                f"(upstream: {part.upstream})")
            with self.lock:
                if self.stopping.is_set():
                    return
                part.process = self.spawn(part, part.command, part.name)
                part.pid_file.write_text(str(part.process.pid))
                self.started.add(part.name)
            status = part.process.wait()
            if self.stopping.is_set():
                return
            if not starts.allows(time.monotonic()):
                self.end(part.name, status)
                return
            # As systemd's Restart=on-failure: the one service again, the others go on.
            log(f"{part.name} ended with status {status}: starting it again")
            time.sleep(RESTART_DELAY)

    def end(self, what: str, status: int) -> None:
        with self.lock:
            if self.stopping.is_set():
                return
            self.ended = (what, status)
            self.stopping.set()
        log(f"{what} ended with status {status}: stopping the other services")

    def stop(self) -> None:
        self.stopping.set()
        running = [p for p in self.parts if p.process and p.process.poll() is None]
        for part in running:
            part.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        deadline = time.monotonic() + STOP_SECONDS
        for part in running:
            try:
                part.process.wait(max(0.1, deadline - time.monotonic()))  # type: ignore[union-attr]
            except subprocess.TimeoutExpired:
                log(f"{part.name} did not stop in {STOP_SECONDS} s: killed")
                os.killpg(part.process.pid, signal.SIGKILL)  # type: ignore[union-attr]

    def run(self) -> int:
        prepare(self.parts)
        signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())
        signal.signal(signal.SIGINT, lambda *_: self.stopping.set())
        threads = [threading.Thread(target=self.bring_up, args=(p,), daemon=True)
                   for p in self.parts]
        for thread in threads:
            thread.start()
        self.stopping.wait()
        self.stop()
        if self.ended is None:
            log("stopped")
            return 0
        return self.ended[1] or 1


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "run"
    parts = load()
    if command == "run":
        return Supervisor(parts).run()
    if command == "health":
        failing = [p.name for p in parts if not p.pid_file.exists() or not healthy(p)]
        if failing:
            print(f"not healthy: {', '.join(failing)}")
        return 1 if failing else 0
    if command == "mountpoints":
        for made in make_mountpoints(parts):
            print(f"mount point {made}")
        return 0
    if command in ("enter", "exec") and len(argv) > 3 and argv[2] == "--":
        if argv[1] not in {p.name for p in parts}:
            print(f"no service {argv[1]!r} here; one of: "
                  + ", ".join(p.name for p in parts), file=sys.stderr)
            return 2
        if command == "exec" and not next(p for p in parts if p.name == argv[1]).pid_file.exists():
            print(f"{argv[1]} is not running (yet)", file=sys.stderr)
            return 1
        (enter if command == "enter" else join)(parts, argv[1], argv[3:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
