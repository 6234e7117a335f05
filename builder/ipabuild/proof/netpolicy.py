"""What a built overlay's NetworkPolicies let each pod open on the other pods' ports.

Locally, podman's network lets every container connect to every peer port, and the
blast radius measures exactly that. In a cluster the NetworkPolicies decide, so a
reviewer needs the same question answered from the manifests: *from this daemon's pod,
which services' ports can an attacker open?* The rules, as Kubernetes defines them:

- a connection from pod A to port P of pod B needs A's egress **and** B's ingress to allow
  it; a pod that no policy of a direction selects is unrestricted in that direction; a
  selected pod accepts only what at least one selecting policy's rules allow (a policy
  with no rules, like a default deny, allows nothing);
- ``policyTypes`` left out means Ingress, plus Egress when the policy has ``egress``;
- a rule without ``from``/``to`` matches every peer, a rule without ``ports`` every port;
  a named port is the destination pod's ``containerPort`` of that name;
- a pod can always reach itself (localhost and its own IP): its containers' ports are
  "same pod", never filtered.

An ``ipBlock`` peer is taken to match every pod: whether pod IPs fall in it depends on the
network plugin, and a reviewer is better told too much reach than too little.

Which services a pod runs and which ports they listen on come from the manifests alone:
a pod's containers (their names and ``containerPorts``), its ``ipabuild.io/service``
annotations, and the Services whose selectors pick it (their ``targetPort``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from ipabuild.emit.manifests.common import ANNOTATION_SERVICE
from ipabuild.emit.manifests.pss import pod_spec

INGRESS, EGRESS = "Ingress", "Egress"
DEFAULT_NAMESPACE = "default"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set on every namespace


@dataclass(frozen=True)
class PodPort:
    """A port some service listens on in a pod, as the pod sees it (after a Service)."""

    service: str
    port: int
    protocol: str = "TCP"
    name: str = ""

    @property
    def label(self) -> str:
        """``SERVICE:PORT``, ``SERVICE:PORT/udp``: TCP ports read like the measured peers."""
        suffix = "" if self.protocol == "TCP" else f"/{self.protocol.lower()}"
        return f"{self.service}:{self.port}{suffix}"


@dataclass
class Pod:
    """The pod of one workload (``Kind/name``): its labels, services and ports."""

    workload: str
    namespace: str
    labels: dict[str, str]
    services: list[str] = field(default_factory=list)
    ports: list[PodPort] = field(default_factory=list)


@dataclass(frozen=True)
class Peer:
    """A port a pod may open: another pod's, allowed by the policies, or its own pod's."""

    port: PodPort
    pod: str
    same_pod: bool

    @property
    def label(self) -> str:
        return self.port.label

    def to_json(self) -> dict[str, object]:
        return {"service": self.port.service, "port": self.port.port,
                "protocol": self.port.protocol, "pod": self.pod, "same_pod": self.same_pod,
                "label": self.label}


@dataclass
class PolicyView:
    """One built overlay's pods and NetworkPolicies, and who may open what."""

    overlay: str
    pods: list[Pod]
    policies: list[dict[str, Any]]
    namespaces: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> labels

    @property
    def policy_names(self) -> list[str]:
        return [p.get("metadata", {}).get("name", "") for p in self.policies]

    def pod_of(self, service: str) -> Pod | None:
        """The pod running ``service``; an overlay with one pod runs every daemon in it
        (the monolith, whose pod has one name for all of them)."""
        found = [p for p in self.pods if service in p.services]
        if found:
            return found[0]
        return self.pods[0] if len(self.pods) == 1 else None

    def allows(self, source: Pod, target: Pod, port: PodPort) -> bool:
        """The policies let ``source`` open ``port`` of ``target`` (a pod reaches itself)."""
        if source is target:
            return True
        return (self._side(source, EGRESS, target, port)
                and self._side(target, INGRESS, source, port))

    def peers(self, pod: Pod) -> list[Peer]:
        """Every port ``pod`` may open: the other pods' the policies allow, then its own
        pod's; each part by service and port, as the measured peers read."""
        others = [Peer(p, other.workload, False) for other in self.pods if other is not pod
                  for p in other.ports if self.allows(pod, other, p)]
        own = [Peer(p, pod.workload, True) for p in pod.ports]
        return sorted(others, key=_order) + sorted(own, key=_order)

    def to_json(self) -> dict[str, object]:
        return {"overlay": self.overlay, "policies": self.policy_names,
                "pods": {p.workload: p.services for p in self.pods}}

    def _side(self, pod: Pod, direction: str, other: Pod, port: PodPort) -> bool:
        """One end's half: ``pod``'s policies of ``direction`` let ``other`` and ``port``
        through (``port`` is always the destination's)."""
        selecting = [p for p in self.policies if direction in _types(p)
                     and _namespace(p) == pod.namespace
                     and _selects(p["spec"].get("podSelector") or {}, pod.labels)]
        if not selecting:
            return True  # not isolated in this direction
        key, peers_key = ("ingress", "from") if direction == INGRESS else ("egress", "to")
        destination = pod if direction == INGRESS else other
        for policy in selecting:
            for rule in policy["spec"].get(key) or []:
                if (self._peer_matches(policy, rule.get(peers_key) or [], other)
                        and _port_matches(rule.get("ports") or [], port, destination)):
                    return True
        return False

    def _peer_matches(self, policy: dict[str, Any], peers: list[dict[str, Any]],
                      pod: Pod) -> bool:
        if not peers:
            return True
        for peer in peers:
            if "ipBlock" in peer:
                return True  # may match pod IPs, depending on the network plugin
            namespaces = peer.get("namespaceSelector")
            if namespaces is None:
                in_namespace = pod.namespace == _namespace(policy)
            else:
                labels = {NAMESPACE_NAME_LABEL: pod.namespace,
                          **self.namespaces.get(pod.namespace, {})}
                in_namespace = _selects(namespaces, labels)
            if in_namespace and _selects(peer.get("podSelector") or {}, pod.labels):
                return True
        return False


def _order(peer: Peer) -> tuple[str, int, str]:
    return peer.port.service, peer.port.port, peer.port.protocol


def _types(policy: dict[str, Any]) -> list[str]:
    spec = policy.get("spec", {})
    return spec.get("policyTypes") or [INGRESS, *([EGRESS] if "egress" in spec else [])]


def _namespace(obj: dict[str, Any]) -> str:
    return obj.get("metadata", {}).get("namespace") or DEFAULT_NAMESPACE


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A label selector (``matchLabels`` and ``matchExpressions``); empty selects all."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def _port_matches(ports: list[dict[str, Any]], port: PodPort, destination: Pod) -> bool:
    if not ports:
        return True
    for allowed in ports:
        if (allowed.get("protocol") or "TCP") != port.protocol:
            continue
        number = allowed.get("port")
        if number is None:
            return True
        if isinstance(number, str):
            named = {p.port for p in destination.ports
                     if p.name == number and p.protocol == port.protocol}
            if port.port in named:
                return True
            continue
        if number <= port.port <= (allowed.get("endPort") or number):
            return True
    return False


def _pod(obj: dict[str, Any], spec: dict[str, Any]) -> Pod:
    template = obj if obj["kind"] == "Pod" else obj.get("spec", {}).get("template", {})
    metadata = template.get("metadata", {})
    annotations = metadata.get("annotations") or {}
    services = [c["name"] for c in spec.get("containers", [])]
    guest = f"{ANNOTATION_SERVICE}."  # ipabuild.io/service.NAME: NAME runs here too
    services += [value if key == ANNOTATION_SERVICE else key[len(guest):]
                 for key, value in annotations.items()
                 if key == ANNOTATION_SERVICE or key.startswith(guest)]
    ports = [PodPort(c["name"], p["containerPort"], p.get("protocol") or "TCP",
                     p.get("name", ""))
             for c in spec.get("containers", []) for p in c.get("ports") or []]
    return Pod(f"{obj['kind']}/{obj['metadata']['name']}", _namespace(obj),
               dict(metadata.get("labels") or {}), list(dict.fromkeys(services)), ports)


def _add_service_ports(service: dict[str, Any], pods: list[Pod]) -> None:
    """A Service's target ports that no container of its pods declares, named after it."""
    selector = service.get("spec", {}).get("selector") or {}
    if not selector:
        return  # selects no pod (its endpoints are managed by hand)
    for pod in pods:
        if pod.namespace != _namespace(service) or not _selects({"matchLabels": selector},
                                                                pod.labels):
            continue
        for entry in service["spec"].get("ports") or []:
            protocol = entry.get("protocol") or "TCP"
            target = entry.get("targetPort", entry.get("port"))
            if isinstance(target, str):
                continue  # a named port is a containerPort, already there
            if not any(p.port == target and p.protocol == protocol for p in pod.ports):
                pod.ports.append(PodPort(service["metadata"]["name"], target, protocol,
                                         entry.get("name", "")))


def policy_view(overlay: str, objects: list[dict[str, Any]]) -> PolicyView:
    """The pods, namespaces and NetworkPolicies of one built overlay's objects."""
    pods = [_pod(o, spec) for o in objects if (spec := pod_spec(o)) is not None]
    for service in (o for o in objects if o.get("kind") == "Service"):
        _add_service_ports(service, pods)
    namespaces = {o["metadata"]["name"]: dict(o["metadata"].get("labels") or {})
                  for o in objects if o.get("kind") == "Namespace"}
    policies = [o for o in objects if o.get("kind") == "NetworkPolicy"]
    return PolicyView(overlay, pods, policies, namespaces)


def policy_view_of_text(overlay: str, text: str) -> PolicyView:
    """The same, from the YAML kustomize printed (what ``scan.render_overlays`` returns)."""
    return policy_view(overlay, [o for o in yaml.safe_load_all(text) if o])
