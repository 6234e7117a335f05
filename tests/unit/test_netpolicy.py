"""What NetworkPolicies allow between pods, from hand-written manifests (each Kubernetes
rule on its own) and from the committed split overlay as kustomize builds it."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import pytest

from ipabuild.proof import scan
from ipabuild.proof.netpolicy import Pod, PodPort, PolicyView, policy_view, policy_view_of_text

ROOT = Path(__file__).resolve().parents[2]
NS = "t"


def _workload(name: str, containers: dict[str, list[tuple[int, str, str]]],
              kind: str = "Deployment", annotations: dict[str, str] | None = None,
              namespace: str = NS) -> dict[str, Any]:
    """A workload whose pod is labelled ``app: NAME``; containers name -> (port, protocol,
    port name)."""
    return {"kind": kind, "metadata": {"name": name, "namespace": namespace},
            "spec": {"template": {
                "metadata": {"labels": {"app": name}, "annotations": annotations or {}},
                "spec": {"containers": [
                    {"name": c, "image": "x", "ports": [
                        {"containerPort": port, "protocol": protocol, "name": port_name}
                        for port, protocol, port_name in ports]}
                    for c, ports in containers.items()]}}}}


def _policy(name: str, app: str | None, *, types: list[str] | None = None,
            ingress: list[dict[str, Any]] | None = None,
            egress: list[dict[str, Any]] | None = None,
            namespace: str = NS) -> dict[str, Any]:
    spec: dict[str, Any] = {"podSelector": {"matchLabels": {"app": app}} if app else {}}
    if types is not None:
        spec["policyTypes"] = types
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    return {"kind": "NetworkPolicy", "metadata": {"name": name, "namespace": namespace},
            "spec": spec}


def _from(app: str) -> dict[str, Any]:
    return {"podSelector": {"matchLabels": {"app": app}}}


def _tcp(*ports: int | str) -> list[dict[str, Any]]:
    return [{"port": p, "protocol": "TCP"} for p in ports]


def _three() -> list[dict[str, Any]]:
    """web (80, 443), db (5432), cache (6379): three pods, no policy yet."""
    return [_workload("web", {"web": [(80, "TCP", "http"), (443, "TCP", "https")]}),
            _workload("db", {"db": [(5432, "TCP", "pg")]}, kind="StatefulSet"),
            _workload("cache", {"cache": [(6379, "TCP", "redis")]})]


def _can(view: PolicyView, source: str, target: str, port: int,
         protocol: str = "TCP") -> bool:
    src, dst = view.pod_of(source), view.pod_of(target)
    assert src is not None and dst is not None
    [wanted] = [p for p in dst.ports if p.port == port and p.protocol == protocol]
    return view.allows(src, dst, wanted)


def _allowed(view: PolicyView, service: str) -> set[str]:
    pod = view.pod_of(service)
    assert pod is not None
    return {p.label for p in view.peers(pod) if not p.same_pod}


def test_without_policies_every_pod_opens_every_port() -> None:
    view = policy_view("o", _three())
    assert view.policies == []
    assert _allowed(view, "web") == {"db:5432", "cache:6379"}
    assert _allowed(view, "db") == {"web:80", "web:443", "cache:6379"}


def test_ingress_only_policy_restricts_the_destination_alone() -> None:
    """db accepts web on 5432 only; nothing limits anyone's egress, and db itself, whose
    egress no policy selects, still opens everything."""
    objects = [*_three(), _policy("db", "db", types=["Ingress"],
                                  ingress=[{"from": [_from("web")], "ports": _tcp(5432)}])]
    view = policy_view("o", objects)
    assert _can(view, "web", "db", 5432)
    assert not _can(view, "cache", "db", 5432)
    assert _allowed(view, "db") == {"web:80", "web:443", "cache:6379"}  # unselected egress
    assert _can(view, "cache", "web", 443)  # web is selected by no policy: unrestricted


def test_egress_only_policy_restricts_the_source_alone() -> None:
    objects = [*_three(), _policy("web-out", "web", types=["Egress"],
                                  egress=[{"to": [_from("db")], "ports": _tcp(5432)}])]
    view = policy_view("o", objects)
    assert _allowed(view, "web") == {"db:5432"}
    assert _can(view, "cache", "web", 80) and _can(view, "db", "web", 443)  # ingress open


def test_policy_types_left_out_mean_ingress_too() -> None:
    """Kubernetes: without policyTypes a policy is Ingress, plus Egress when it has egress
    rules; so an egress-only *looking* policy also shuts the pod's ingress."""
    objects = [*_three(), _policy("web-out", "web",
                                  egress=[{"to": [_from("db")], "ports": _tcp(5432)}])]
    view = policy_view("o", objects)
    assert _allowed(view, "web") == {"db:5432"}
    assert not _can(view, "cache", "web", 80)


def test_both_ends_must_allow() -> None:
    """web's egress allows db:5432 but db's ingress takes only cache: closed; the reverse
    direction needs web's ingress, which no policy restricts, and db's egress, likewise."""
    objects = [*_three(),
        _policy("web-out", "web", types=["Egress"], egress=[{"to": [_from("db")]}]),
        _policy("db-in", "db", types=["Ingress"],
                ingress=[{"from": [_from("cache")], "ports": _tcp(5432)}])]
    view = policy_view("o", objects)
    assert not _can(view, "web", "db", 5432)
    assert _can(view, "cache", "db", 5432)
    assert _can(view, "db", "web", 80)


def test_default_deny_then_allow_policies_add_up() -> None:
    """A policy with no rules selects and allows nothing; allow policies on top add up,
    each for the pods it selects."""
    objects = [*_three(),
        _policy("deny", None, types=["Ingress", "Egress"]),
        _policy("web", "web", types=["Ingress", "Egress"], ingress=[{"ports": _tcp(443)}],
                egress=[{"to": [_from("db")], "ports": _tcp(5432)}]),
        _policy("db", "db", types=["Ingress"], ingress=[{"from": [_from("web")]}])]
    view = policy_view("o", objects)
    assert _allowed(view, "web") == {"db:5432"}
    assert _allowed(view, "db") == set()    # db's egress: only the deny
    assert _allowed(view, "cache") == set()
    assert not _can(view, "db", "web", 443)  # web takes 443 from anyone, db may not send
    assert view.policy_names == ["deny", "web", "db"]


def test_a_pod_always_reaches_its_own_ports() -> None:
    objects = [_workload("ldap", {"ldap": [(3389, "TCP", "ldap")],
                                  "kdc": [(8088, "TCP", "k"), (8088, "UDP", "ku")]},
                         annotations={"ipabuild.io/service": "ldap",
                                      "ipabuild.io/service.kdc": "kdc runs here"}),
               _policy("deny", None, types=["Ingress", "Egress"])]
    view = policy_view("o", objects)
    pod = view.pod_of("kdc")
    assert pod is view.pod_of("ldap") and pod is not None
    assert [(p.label, p.same_pod) for p in view.peers(pod)] == [
        ("kdc:8088", True), ("kdc:8088/udp", True), ("ldap:3389", True)]


def test_named_ports_ranges_protocols_and_expressions() -> None:
    objects = [*_three(),
        _workload("dns", {"dns": [(53, "UDP", "dns"), (53, "TCP", "dns-tcp")]}),
        _policy("web-in", "web", types=["Ingress"], ingress=[{"ports": _tcp("https")}]),
        _policy("db-in", "db", types=["Ingress"],
                ingress=[{"from": [{"podSelector": {"matchExpressions": [
                    {"key": "app", "operator": "In", "values": ["cache"]}]}}],
                          "ports": [{"port": 5000, "endPort": 6000}]}]),
        _policy("dns-in", "dns", types=["Ingress"],
                ingress=[{"ports": [{"port": 53, "protocol": "UDP"}]}])]
    view = policy_view("o", objects)
    assert _can(view, "cache", "web", 443) and not _can(view, "cache", "web", 80)
    assert _can(view, "cache", "db", 5432) and not _can(view, "web", "db", 5432)
    assert _can(view, "web", "dns", 53, "UDP") and not _can(view, "web", "dns", 53, "TCP")


def test_namespace_selectors() -> None:
    """A podSelector alone means the policy's namespace; a namespaceSelector picks others
    by their labels (every namespace has kubernetes.io/metadata.name)."""
    objects = [_workload("api", {"api": [(8443, "TCP", "https")]}),
               _workload("client", {"client": []}, namespace="other"),
               _workload("stranger", {"stranger": []}, namespace="third"),
               {"kind": "Namespace", "metadata": {"name": "third", "labels": {"team": "a"}}},
               _policy("api", "api", types=["Ingress"], ingress=[{"from": [
                   {"namespaceSelector": {"matchLabels": {
                       "kubernetes.io/metadata.name": "other"}}},
                   {"namespaceSelector": {"matchLabels": {"team": "b"}}},
                   _from("client")]}])]
    view = policy_view("o", objects)
    assert _can(view, "client", "api", 8443)
    assert not _can(view, "stranger", "api", 8443)
    objects[3]["metadata"]["labels"]["team"] = "b"
    assert _can(policy_view("o", objects), "stranger", "api", 8443)


def test_service_target_ports_count_when_no_container_declares_them() -> None:
    objects = [_workload("web", {"web": []}), _workload("client", {"client": []}),
               {"kind": "Service", "metadata": {"name": "frontend", "namespace": NS},
                "spec": {"selector": {"app": "web"},
                         "ports": [{"port": 443, "targetPort": 8443, "protocol": "TCP"},
                                   {"port": 80}]}}]
    view = policy_view("o", objects)
    web = view.pod_of("web")
    assert web is not None
    assert web.ports == [PodPort("frontend", 8443), PodPort("frontend", 80)]
    assert _allowed(view, "client") == {"frontend:80", "frontend:8443"}


def test_an_ip_block_is_taken_to_reach_pods() -> None:
    objects = [*_three(), _policy("web-out", "web", types=["Egress"], egress=[
        {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": _tcp(6379)}])]
    assert _allowed(policy_view("o", objects), "web") == {"cache:6379"}


def test_one_pod_overlay_runs_every_daemon() -> None:
    """The monolith's overlay names its one pod differently from the local container's
    service; the only pod is every daemon's."""
    view = policy_view("o", [_workload("freeipa", {"freeipa": [(389, "TCP", "ldap")]})])
    assert view.pod_of("monolithic") is view.pods[0]
    assert policy_view("o", _three()).pod_of("monolithic") is None


# ---- the committed split overlay, built by the real kustomize ------------------------

OVERLAYS = ["split", "monolithic-userns"]


@pytest.fixture(scope="module")
def built() -> dict[str, PolicyView]:
    if not any(shutil.which(b) for b in ("kubectl", "kustomize", "oc")):
        pytest.skip("no kustomize (kubectl, kustomize or oc) to build the overlay")
    return {overlay: policy_view_of_text(overlay, text)
            for overlay, text in scan.render_overlays(ROOT, OVERLAYS).items()}


@pytest.fixture
def split(built: dict[str, PolicyView]) -> PolicyView:
    return built["split"]


def _port(pod: Pod, service: str, number: int, protocol: str = "TCP") -> PodPort:
    return next(p for p in pod.ports
                if (p.service, p.port, p.protocol) == (service, number, protocol))


def test_split_overlay_pods_and_policies(split: PolicyView) -> None:
    kdc, ldap = split.pod_of("kdc"), split.pod_of("ldap")
    assert kdc is not None and kdc is ldap  # the kdc is a container of ldap's pod
    assert "ipabuild-default-deny" in split.policy_names
    assert {p.workload for p in split.pods} == {"Deployment/http", "StatefulSet/ca",
                                                "StatefulSet/ldap"}


def test_split_kdcs_pod_reaches_ldaps_ports(split: PolicyView) -> None:
    """Over localhost (same pod), and by the policies too: a second ldap replica's kdc
    reaches the first's ldap (kdc-allow's egress to ldap's pods on 3389/3636,
    ldap-allow's ingress from ldap's pods)."""
    pod = split.pod_of("kdc")
    assert pod is not None
    same = {p.label for p in split.peers(pod) if p.same_pod}
    assert {"ldap:3389", "ldap:3636"} <= same
    replica = copy.deepcopy(pod)
    for number in (3389, 3636):
        assert split.allows(replica, pod, _port(pod, "ldap", number))


def test_split_http_reaches_the_kdcs_admin_port(split: PolicyView) -> None:
    """What the committed policies say, not what one might wish: http is a client of the
    kdc (its spec depends on it), so http-allow's egress lists every kdc port, kadmin's
    8749 included, and kdc-allow's ingress takes those ports from any pod."""
    http, kdc = split.pod_of("http"), split.pod_of("kdc")
    assert http is not None and kdc is not None
    assert split.allows(http, kdc, _port(kdc, "kdc", 8749))
    ca = split.pod_of("ca")
    # The CA is no client of the kdc (its spec depends on ldap alone): kadmin is closed to
    # it; Kerberos and kpasswd stay open, as the server name's public ports are to all.
    assert ca is not None and not split.allows(ca, kdc, _port(kdc, "kdc", 8749))
    assert split.allows(ca, kdc, _port(kdc, "kdc", 8088))
    # the server name's public ports are every pod's to reach (a forms login's session
    # cookie: httpd asks the server name); what they do deny: Dogtag to all but its clients
    assert split.allows(ca, http, _port(http, "http", 443))
    assert not any(split.allows(kdc, ca, p) for p in ca.ports)
    assert {p.label for p in split.peers(http) if not p.same_pod} == {
        "ca:8080", "ca:8443", "kdc:8088", "kdc:8088/udp", "kdc:8464", "kdc:8464/udp",
        "kdc:8749", "ldap:3389", "ldap:3636"}


def test_monolith_overlay_one_pod_every_port_its_own(built: dict[str, PolicyView]) -> None:
    """The local monolith's daemons run in the overlay's one pod: every port is "same
    pod", and the policies open no other pod (there is none)."""
    view = built["monolithic-userns"]
    pod = view.pod_of("monolithic")
    assert pod is not None and [p.workload for p in view.pods] == ["StatefulSet/freeipa"]
    peers = view.peers(pod)
    assert peers and all(p.same_pod for p in peers)
    assert {"freeipa:389", "freeipa:88/udp", "freeipa:749"} <= {p.label for p in peers}
    assert "ipabuild-default-deny" in view.policy_names
