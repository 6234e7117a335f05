"""A daemon run as this process's child, restarted in place when a new certificate
arrives, and ending this process when it ends by itself.

389-ds and krb5kdc read their certificates only when they start, so the watchers that
give them renewed ones (ldap's slapd_tls.py, the kdc's kdc_pkinit.py) run them as
children: SIGTERM and SIGINT are forwarded to the daemon, and the watcher's exit status
is the daemon's, so the container's restart policy sees a crash as one.
"""

from __future__ import annotations

import signal
import subprocess
from typing import Any


class Child:
    """``argv`` as a child process that can be stopped and started again."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.process: subprocess.Popen[bytes] | None = None
        self.stopping = False  # a forwarded SIGTERM or SIGINT: the container stops

    def start(self) -> None:
        self.process = subprocess.Popen(self.argv)

    def wait(self, timeout: float) -> int | None:
        """The child's exit status once it ended, or None after ``timeout`` seconds."""
        assert self.process is not None
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> int:
        """SIGTERM, then its exit status."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait()

    def forward(self, signum: int, _frame: Any) -> None:
        """The signal handler: the container stops, and the child with it."""
        self.stopping = True
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)

    def handle_signals(self) -> None:
        signal.signal(signal.SIGTERM, self.forward)
        signal.signal(signal.SIGINT, self.forward)
