"""Run the built overlays for real with `podman kube play`, both of them:

- split-userns: every workload (ldap, kdc, ca with its init container, http) becomes
  ready in a user namespace of its own (hostUsers: false honoured: uid_map onto a
  non-root host range);
- split: every pod in the host's user namespace, under a random UID per pod with GID 0,
  as OpenShift's restricted-v2 SCC assigns them (the CA's pkispawn included), and no
  process is UID 0 anywhere.

Each played stack serves Kerberos, SASL/GSSAPI, SPNEGO and the CA to a separate client
container.

What the harness translates for podman 4.3.1 is in tests/integration/kubeplay.py and
docs/manifests.md; the manifests themselves are played as kustomize builds them.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from ipabuild.spec.load import load_project, load_services
from ipabuild.spec.ordering import dependency_order
from tests.integration import kubeplay
from tests.integration.conftest import ipabuild
from tests.integration.kubeplay import Play, podman
from tests.integration.stack_client import KINIT_ADMIN, Client, admin_env, build_client_image

pytestmark = pytest.mark.integration
OVERLAY = "split-userns"
READY_TIMEOUT = 300


@pytest.fixture(scope="module", params=["split-userns", "split"])
def played(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Play]:
    overlay: str = request.param
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed")
    project = load_project(kubeplay.ROOT)
    services = dependency_order(load_services(kubeplay.ROOT, project, []))
    for service in services:
        image = f"{project.image.prefix}/{service.name}:{project.image.tag}"
        if podman("image", "exists", image, check=False).returncode != 0:
            pytest.fail(f"{image} is not built (ipabuild images)")
    build_client_image()
    workdir = tmp_path_factory.mktemp("kubeplay")
    objects, secret_values = kubeplay.build_overlay(workdir, overlay)
    # The others are containers of a host pod, or the server name (a Service, no pods).
    workloads = [s for s in services if not s.pod and not s.serves_name]
    assert sorted(kubeplay.workload_names(objects)) == sorted(s.name for s in workloads)
    # Not under pytest's tmp (mode 0700): root inside the pods' user namespaces is not
    # host root and must traverse to the projected files, as it can to kubelet's.
    projected = Path(tempfile.mkdtemp(prefix="ipabuild-play-secrets-"))
    projected.chmod(0o755)
    play = Play(f"play{uuid.uuid4().hex[:6]}", workdir, project.domain, secret_values,
                overlay=overlay)
    if overlay == "split":  # distinct random UIDs, as from a namespace's range
        uids = random.sample(range(1_000_000_000, 1_999_999_999), len(workloads))
        play.run_as_users = {s.name: uid for s, uid in zip(workloads, uids, strict=True)}
    play.start_network([s.name for s in workloads])
    guests = {w.name: tuple(s.name for s in services if s.pod == w.name) for w in workloads}
    for host, names in guests.items():
        play.addresses.update(dict.fromkeys(names, play.addresses[host]))
    try:
        # All pods at once, as a cluster starts them: no ordering but each entrypoint's
        # own waits (kdc for ldap's bind, the CA's init container for ldap, http for kdc).
        started = time.monotonic()
        with ThreadPoolExecutor(len(workloads)) as pool:
            plays = [pool.submit(play.play, objects, s.name, projected, guests[s.name])
                     for s in reversed(workloads)]
            # each returns after its inits
            pods = [pod for future in plays for pod in future.result()]
        for pod in reversed(pods):
            play.wait_ready(pod, READY_TIMEOUT)
            print(f"kube play {pod.service}: ready {time.monotonic() - started:.1f}s after start")
        yield play
    finally:
        play.down()
        shutil.rmtree(projected, ignore_errors=True)


def _probe(container: str, gone_ok: bool = False) -> list[dict[str, Any]]:
    """Every process of a container as `ipabuild probe --json` measures it on the host
    (none when ``gone_ok`` and it has exited meanwhile, as an init container does)."""
    result = ipabuild("probe", container, "--json")
    if gone_ok and not result.stdout and "is not running" in result.stderr:
        return []
    assert result.returncode in (0, 1) and result.stdout, f"{container}: {result.stderr}"
    return json.loads(result.stdout)["processes"]


def test_identities_are_what_the_overlay_asks_for(played: Play) -> None:
    """split-userns: a user namespace per pod. Plain split, as on an OpenShift without
    user namespaces: each pod's processes have the UID the admission assigned, GID 0, no
    user namespace of their own, and none is UID 0 in any."""
    if played.overlay == "split-userns":
        _own_user_namespace_per_pod(played)
        return
    for service, pod in played.pods.items():
        assert "hostUsers" not in pod.pod_spec, service
        host = next(name for name, p in played.pods.items() if p.pod == pod.pod
                    and name in played.run_as_users)
        uid = played.run_as_users[host]
        processes = _probe(pod.container)
        assert processes, f"{service}: no process"
        for process in processes:
            assert not process["own_user_namespace"], (service, process["command"])
            assert set(process["uids_host"]) == {uid}, (service, process)
            assert 0 not in process["uids_container"], (service, process)
            assert process["gids_host"][1] == 0, (service, process)  # GID 0, as OpenShift


def _own_user_namespace_per_pod(played: Play) -> None:
    namespaces = set()
    for service, pod in played.pods.items():
        assert pod.pod_spec["hostUsers"] is False, service
        processes = _probe(pod.container)
        assert processes, f"{service}: no process"
        for process in processes:
            assert process["own_user_namespace"], f"{service}: {process['command']} host userns"
            assert not process["map_reaches_host_root"], (service, process["uid_map"])
        namespaces.add(Path(f"/proc/{pod.pid()}/ns/user").readlink())
        assert podman("exec", pod.container, "id", "-u").stdout.strip() != "0", service
        etc_hosts = podman("exec", pod.container, "cat", "/etc/hosts").stdout
        for peer, address in played.addresses.items():  # the harness's hostAliases
            assert re.search(rf"^{re.escape(address)}\s+{peer}\b", etc_hosts, re.M), etc_hosts
    pods = {pod.pod for pod in played.pods.values()}
    assert len(namespaces) == len(pods), "pods share a user namespace"
    # A guest container (kdc in ldap's pod) shares its host's: LDAPI peer credentials.
    for service, pod in played.pods.items():
        host = next(p for p in played.pods.values() if p.pod == pod.pod)
        assert (Path(f"/proc/{pod.pid()}/ns/user").readlink()
                == Path(f"/proc/{host.pid()}/ns/user").readlink()), service


def test_no_process_of_any_pod_is_root_on_the_host(played: Play) -> None:
    """Every container of every pod, its init containers included, and in split-userns
    its infra container too. In the plain split play podman's own infra process
    (catatonit, the pod's holder of namespaces) is host root: podman 4.3 runs it as root
    in a pod without a user namespace whatever the infra image's USER (measured); on a
    cluster the sandbox is the runtime's, not podman's. It is the one root process there,
    and this test says so rather than skip it."""
    for service, pod in played.pods.items():
        infra = podman("pod", "inspect", pod.pod, "--format", "{{.InfraContainerID}}"
                       ).stdout.strip()
        containers = podman("ps", "-a", "--filter", f"pod={pod.pod}", "--filter",
                            "status=running", "--format", "{{.ID}} {{.Names}}").stdout
        named = dict(line.split() for line in containers.splitlines())
        assert len(named) >= 2, f"pod {pod.pod}: {named}"  # infra + daemon
        assert pod.container in named.values()
        for container_id, container in named.items():
            for process in _probe(container, gone_ok=container != pod.container):
                if (played.overlay == "split" and infra.startswith(container_id)
                        and process["command"] == "catatonit"):
                    continue  # podman's infra, see above
                assert not process["host_root_uid"], \
                    f"{service}/{container}: {process['command']} {process['uids_host']}"


def test_pods_map_disjoint_host_ranges(played: Play) -> None:
    if played.overlay == "split":  # no user namespaces: one host UID per pod, none shared
        uids = {p.pod: set(_probe(p.container)[0]["uids_host"]) for p in played.pods.values()}
        assert len(set.union(*uids.values())) == len(uids), uids
        return
    ranges = []
    one_per_pod = {pod.pod: (service, pod) for service, pod in played.pods.items()}
    for service, pod in one_per_pod.values():
        for line in Path(f"/proc/{pod.pid()}/uid_map").read_text().splitlines():
            _inside, host, size = (int(v) for v in line.split())
            ranges.append((host, host + size, service))
    ranges.sort()
    for (_, end, first), (start, _, second) in itertools.pairwise(ranges):
        assert end <= start, f"{first} and {second} share host UIDs"


@pytest.fixture(scope="module")
def play_client(played: Play) -> Client:
    return Client(played.name, played.secret_values, played.host_entries())


def test_played_stack_issues_tickets_and_serves_spnego_and_gssapi(play_client: Client) -> None:
    url = "https://http.example.test/ipa/whoami"
    result = play_client.run(
        f"{KINIT_ADMIN} && klist && curl -sSk --negotiate -u : {url} && echo && "
        "ldapwhoami -N -Y GSSAPI -H ldap://ldap.example.test:3389",
        env=admin_env(play_client))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "krbtgt/EXAMPLE.TEST@EXAMPLE.TEST" in result.stdout
    assert "admin@EXAMPLE.TEST" in result.stdout.split("krbtgt", 1)[1]
    assert "dn: uid=admin,cn=users,cn=accounts,dc=example,dc=test" in result.stdout


def test_played_ca_answers_through_the_web_front(play_client: Client) -> None:
    deadline = time.monotonic() + 60
    while True:
        result = play_client.run(
            "curl -sSfk -H 'Accept: application/json' "
            "https://http.example.test/ca/rest/certs/0x1")
        if result.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.search(r'"Status"\s*:\s*"VALID"', result.stdout), result.stdout[:500]


def test_the_server_names_service_reaches_each_port_on_the_container_that_serves_it(
        played: Play, play_client: Client, tmp_path: Path) -> None:
    """kube play ignores Services, so this computes what a cluster's endpoints for the
    Service of the server name are (per port, the played pods declaring its named
    targetPort with its protocol) and reaches each one where it listens: LDAP and HTTP by
    TCP, the KDC by Kerberos over UDP and TCP."""
    project = load_project(kubeplay.ROOT)
    objects, _values = kubeplay.build_overlay(tmp_path, OVERLAY)  # as built, not as played
    service = next(o for o in objects if o["kind"] == "Service"
                   and o["metadata"]["name"] == project.server_name)
    selected = [o for o in objects if o["kind"] in kubeplay.WORKLOADS
                and service["spec"]["selector"].items()
                <= o["spec"]["template"]["metadata"]["labels"].items()]
    targets = []
    for port in service["spec"]["ports"]:
        endpoints = {(o["metadata"]["name"], p["containerPort"]) for o in selected
                     for c in o["spec"]["template"]["spec"]["containers"]
                     for p in c.get("ports", [])
                     if p["name"] == port["targetPort"] and p["protocol"] == port["protocol"]}
        assert len(endpoints) == 1, (port, endpoints)
        (workload, container_port), = endpoints
        targets.append((port["name"], port["protocol"], played.addresses[workload],
                        container_port))
    assert {name for name, *_ in targets} >= {"ldap", "ldaps", "kerberos", "https"}, targets
    checks = " && ".join(f"(exec 3<>/dev/tcp/{address}/{number}) && echo {name}-open"
                         for name, protocol, address, number in targets if protocol == "TCP")
    result = play_client.run(checks)
    assert result.returncode == 0, result.stdout + result.stderr
    for name, protocol, address, number in targets:
        if protocol == "TCP":
            assert f"{name}-open" in result.stdout, (name, result.stdout)
        if name.startswith("kerberos"):
            kinit = play_client.run(f"{KINIT_ADMIN} && klist", kdc=f"{address}:{number}",
                                    env=admin_env(play_client),
                                    udp_limit=65535 if protocol == "UDP" else 1)
            assert "krbtgt/EXAMPLE.TEST" in kinit.stdout, (name, kinit.stderr[-1000:])


@pytest.mark.parametrize(("overlay", "own_namespace"), [("split-userns", True), ("split", False)])
def test_kube_play_derives_the_user_namespace_from_host_users_alone(
        tmp_path: Path, overlay: str, own_namespace: bool) -> None:
    """Without the harness's size flag: hostUsers decides whether the pod gets a user
    namespace (mapped away from host root); `--userns=auto:size=65536` only sizes it."""
    objects, _values = kubeplay.build_overlay(tmp_path, overlay)
    secret_dir = Path(tempfile.mkdtemp(prefix="ipabuild-play-secrets-"))
    name = f"hu{uuid.uuid4().hex[:6]}"
    manifest = tmp_path / "ldap.yaml"
    manifest.write_text(yaml.safe_dump_all(kubeplay.playable(objects, "ldap", name, secret_dir)))
    try:
        created = podman("kube", "play", "--start=false", str(manifest), check=False)
        assert created.returncode == 0, created.stderr
        shared = podman("pod", "inspect", f"{name}-ldap", "--format",
                        "{{.SharedNamespaces}}").stdout
        assert ("user" in shared.strip("[]\n").split()) is own_namespace, shared
        config = json.loads(podman("inspect", f"{name}-ldap-ldap").stdout)[0]["HostConfig"]
        mappings = (config.get("IDMappings") or {}).get("UidMap") or []
        host_ids = [int(m.split(":")[1]) for m in mappings]  # container:host:size
        assert bool(host_ids) is own_namespace and 0 not in host_ids, mappings
    finally:
        podman("kube", "play", "--down", str(manifest), check=False)
        shutil.rmtree(secret_dir, ignore_errors=True)
        for volume in podman("volume", "ls", "-q").stdout.split():
            if volume.startswith(f"{name}-"):
                podman("volume", "rm", "-f", volume, check=False)
