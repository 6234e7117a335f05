"""The on-demand podman API service: one left in a deleted directory is found (it answers
pings but cannot start containers), a healthy one is left alone."""

from __future__ import annotations

from pathlib import Path

from ipabuild.stack.podman_api import URL, health_report, stale_services


def _process(proc: Path, pid: int, argv: list[str], cwd: str) -> None:
    entry = proc / str(pid)
    entry.mkdir()
    (entry / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (entry / "cwd").symlink_to(cwd)


def test_a_service_in_a_deleted_directory_is_stale(tmp_path: Path) -> None:
    service = ["podman", "system", "service", "--time=0", URL]
    _process(tmp_path, 101, service, "/work/wt-ranges (deleted)")
    _process(tmp_path, 102, service, "/")
    _process(tmp_path, 103, ["bash"], "/tmp/gone (deleted)")
    _process(tmp_path, 104, ["podman", "system", "service", "unix:///other.sock"],
             "/x (deleted)")
    assert stale_services(tmp_path) == [101]


class _Response:
    def __init__(self, status_code: int, document: dict) -> None:
        self.status_code, self._document = status_code, document

    def json(self) -> dict:
        return self._document


class _Api:
    def __init__(self, response: _Response) -> None:
        self.response = response

    def get(self, path: str) -> _Response:
        assert path == "/containers/c1/healthcheck"
        return self.response


class _Container:
    def __init__(self, health_log: list[dict]) -> None:
        self.attrs = {"State": {"Health": {"Log": health_log}}}


class _Containers:
    def __init__(self, health_log: list[dict]) -> None:
        self.health_log = health_log

    def get(self, name: str) -> _Container:
        assert name == "c1"
        return _Container(self.health_log)


class _Client:
    def __init__(self, response: _Response, health_log: list[dict] | None = None) -> None:
        self.api = _Api(response)
        self.containers = _Containers(health_log or [])


def test_health_report_carries_what_the_check_said_last() -> None:
    """`ipabuild up` quotes the check's last line when a service stays unhealthy."""
    log = [{"ExitCode": 1, "Output": "no IPA CA certificate at /etc/ipa/ca.crt"},
           {"ExitCode": 1, "Output": "no RA agent certificate at /var/lib/ipa/ra-agent.pem\n"}]
    client = _Client(_Response(200, {"Status": "unhealthy", "Log": log}))
    assert health_report(client, "c1") == (  # type: ignore[arg-type]
        "unhealthy", "no RA agent certificate at /var/lib/ipa/ra-agent.pem")
    assert health_report(_Client(_Response(409, {})), "c1") == ("none", "")  # type: ignore[arg-type]
    assert health_report(_Client(_Response(200, {"Status": "healthy"})), "c1") == (  # type: ignore[arg-type]
        "healthy", "")


def test_health_report_reads_the_containers_log_when_the_endpoint_gives_none() -> None:
    """podman 4.3's healthcheck endpoint answers "Log": null: what the run printed is the
    last entry of the container's health log (the kdc's "PKINIT on, OTP on")."""
    log = [{"ExitCode": 0, "Output": "kdc: healthy, PKINIT off"},
           {"ExitCode": 0, "Output": "kdc: healthy, PKINIT on, OTP on"}]
    client = _Client(_Response(200, {"Status": "healthy", "Log": None}), log)
    assert health_report(client, "c1") == (  # type: ignore[arg-type]
        "healthy", "kdc: healthy, PKINIT on, OTP on")
