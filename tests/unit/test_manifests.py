"""kustomize/ from the specs: built by a real kustomize, validated strictly, PSS restricted.

The overlays are built from a copy of kustomize/ whose secret files are dummies (the real
ones are written by `ipabuild secrets --out kustomize/secrets` and never committed).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from ipabuild.emit import kustomize
from ipabuild.emit.manifests.common import ROOT_INIT_CAPABILITIES, needs_root_init
from ipabuild.emit.manifests.pss import pod_spec, violations
from ipabuild.emit.manifests.schemas import is_openshift, validate_openshift
from ipabuild.emit.tree import ManifestOptions, check_manifests, render_manifests
from ipabuild.spec.load import load_project, load_services

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ["split", "split-userns", "monolithic-userns", "openshift/split",
            "openshift/split-userns", "openshift/monolithic-userns"]
K8S_VERSIONS = ["1.33", kubernetes_validate.latest_version()]


def _options(project: Any) -> ManifestOptions:
    return ManifestOptions(project.image.prefix, project.image.tag)


@pytest.fixture(scope="module")
def specs() -> tuple[Any, list[Any]]:
    project = load_project(ROOT)
    return project, load_services(ROOT, project, [])


@pytest.fixture(scope="module")
def built(specs: tuple[Any, list[Any]], tmp_path_factory: pytest.TempPathFactory
          ) -> dict[str, list[dict[str, Any]]]:
    """Every overlay, built with the real kustomize from freshly rendered files."""
    project, services = specs
    tree = tmp_path_factory.mktemp("kustomize")
    for relative, text in render_manifests(project, services, _options(project)).items():
        (tree / relative).parent.mkdir(parents=True, exist_ok=True)
        (tree / relative).write_text(text)
    secrets = yaml.safe_load((tree / "secrets/kustomization.yaml").read_text())
    for name in secrets["secretGenerator"][0]["files"]:
        (tree / "secrets" / name).write_text(f"dummy-{name}")
    return {overlay: kustomize.build(tree / "overlays" / overlay) for overlay in OVERLAYS}


def _root_init(services: list[Any]) -> frozenset[str]:
    """The containers allowed the one documented exception (root init in a userns)."""
    return frozenset(f"{s.name}-init" for s in services if needs_root_init(s))


def test_committed_kustomize_is_what_the_specs_produce(specs: tuple[Any, list[Any]]) -> None:
    project, services = specs
    files = render_manifests(project, services, _options(project))
    assert files == render_manifests(project, services, _options(project))  # deterministic
    drifts = check_manifests(ROOT, files)
    assert not drifts, "run `ipabuild manifests`:\n" + "\n".join(d.summary() for d in drifts)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_builds_and_validates_strictly(overlay: str,
                                               built: dict[str, list[dict[str, Any]]]) -> None:
    objects = built[overlay]
    assert objects, overlay
    for obj in objects:
        if is_openshift(obj):
            validate_openshift(obj)
            continue
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


def test_every_object_is_in_the_project_namespace(specs: tuple[Any, list[Any]],
                                                  built: dict[str, list[dict[str, Any]]]
                                                  ) -> None:
    namespace = specs[0].namespace
    assert namespace not in ("", "default")
    for overlay in OVERLAYS:
        for obj in built[overlay]:
            assert obj["metadata"].get("namespace") == namespace, (overlay, obj["kind"],
                                                                    obj["metadata"]["name"])


def test_requests_and_limits_come_from_each_spec(specs: tuple[Any, list[Any]],
                                                 built: dict[str, list[dict[str, Any]]]
                                                 ) -> None:
    by_name = {s.name: s for s in specs[1] if not s.serves_name}
    seen = set()
    for obj in built["split-userns"]:
        spec = pod_spec(obj)
        if spec is None:
            continue
        for container in spec["containers"] + spec.get("initContainers", []):
            wanted = by_name[container["name"].removesuffix("-init")].resources
            limits = {"cpu": wanted.cpu_limit}
            if wanted.memory_limit is not None:
                limits["memory"] = wanted.memory_limit
            assert container["resources"] == {
                "requests": {"cpu": wanted.cpu_request, "memory": wanted.memory_request},
                "limits": limits}
            seen.add(wanted.memory_request)
    assert len(seen) == len(by_name), "every service has figures of its own"
    # 389-ds checks its caches against limit minus usage (page cache included): no limit,
    # said in the spec
    assert by_name["ldap"].resources.memory_limit is None
    assert "page cache" in by_name["ldap"].resources.no_memory_limit_because


def test_no_memory_limit_needs_its_reason() -> None:
    from ipabuild.spec.model import Resources

    with pytest.raises(ValueError, match="needs no_memory_limit_because"):
        Resources(memory_limit=None)
    with pytest.raises(ValueError, match="only for memory_limit: null"):
        Resources(no_memory_limit_because="why")
    assert Resources(memory_limit=None, no_memory_limit_because="why").memory_limit is None


def test_monolith_drops_net_raw_probes_liveness_and_has_network_policies(
        built: dict[str, list[dict[str, Any]]]) -> None:
    objects = built["monolithic-userns"]
    statefulset = next(o for o in objects if pod_spec(o) is not None)
    spec = pod_spec(statefulset)
    for container in spec["containers"] + spec["initContainers"]:
        capabilities = container["securityContext"]["capabilities"]
        assert capabilities["drop"] == ["ALL"], container["name"]
        assert "NET_RAW" not in capabilities.get("add", [])
        assert container["imagePullPolicy"] == "Always"
    main = spec["containers"][0]
    assert {"startupProbe", "readinessProbe", "livenessProbe"} <= set(main)
    policies = {o["metadata"]["name"]: o["spec"] for o in objects
                if o["kind"] == "NetworkPolicy"}
    assert set(policies) == {"ipabuild-default-deny", "freeipa-allow"}
    allow = policies["freeipa-allow"]
    assert allow["podSelector"]["matchLabels"] == statefulset["spec"]["selector"]["matchLabels"]
    service = next(o for o in objects if o["kind"] == "Service")
    assert {(p["port"], p["protocol"]) for p in allow["ingress"][0]["ports"]} == {
        (p["port"], p["protocol"]) for p in service["spec"]["ports"]}
    assert allow["egress"][0]["ports"][0] == {"port": 53, "protocol": "UDP"}


def test_openshift_schema_is_strict(built: dict[str, list[dict[str, Any]]]) -> None:
    route = next(o for o in built["openshift/split"] if o["kind"] == "Route")
    broken = copy.deepcopy(route)
    broken["spec"]["tls"]["termination"] = "sideways"
    with pytest.raises(Exception, match="sideways"):
        validate_openshift(broken)
    broken = copy.deepcopy(route)
    broken["spec"]["tos"] = broken["spec"].pop("to")
    with pytest.raises(Exception, match="tos"):
        validate_openshift(broken)


@pytest.mark.parametrize("overlay", ["split", "split-userns", "openshift/split",
                                     "openshift/split-userns"])
def test_every_container_meets_pss_restricted(overlay: str, specs: tuple[Any, list[Any]],
                                              built: dict[str, list[dict[str, Any]]]) -> None:
    workloads = [o for o in built[overlay] if pod_spec(o) is not None]
    # One workload per service, except a service that runs in another's pod (`pod:`).
    assert len(workloads) == len([s for s in specs[1] if not s.pod and not s.serves_name])
    containers = {c["name"] for o in workloads for c in pod_spec(o)["containers"]}
    assert containers == {s.name for s in specs[1] if not s.serves_name}
    # No exemption: split mode runs no container as root, init containers included.
    problems = [p for o in workloads for p in violations(o)]
    assert problems == []
    annotations = [a for o in workloads
                   for a in o["spec"]["template"]["metadata"].get("annotations", {})]
    assert "ipabuild.io/root-in-user-namespace" not in annotations


def test_split_declares_no_root_step(specs: tuple[Any, list[Any]]) -> None:
    """The CA's init, once root in a user namespace, runs as the CA's own UID: no split
    service may bring that back (the monolith, root by design, is not a split service)."""
    assert [s.name for s in specs[1] if needs_root_init(s)] == []


def test_userns_overlays_set_host_users_false(built: dict[str, list[dict[str, Any]]]) -> None:
    for overlay in OVERLAYS:
        for obj in built[overlay]:
            spec = pod_spec(obj)
            if spec is None:
                continue
            expected = False if "userns" in overlay else None
            assert spec.get("hostUsers") is expected, (overlay, obj["metadata"]["name"])


def test_openshift_sccs(specs: tuple[Any, list[Any]],
                        built: dict[str, list[dict[str, Any]]]) -> None:
    root_init = {s.name for s in specs[1] if needs_root_init(s)}
    for overlay, normal in (("openshift/split", "restricted-v2"),
                            ("openshift/split-userns", "restricted-v3")):
        for obj in built[overlay]:
            if pod_spec(obj) is None:
                continue
            template = obj["spec"]["template"]
            scc = template["metadata"]["annotations"]["openshift.io/required-scc"]
            name = obj["metadata"]["name"]
            assert name not in root_init
            assert scc == normal, (overlay, name)  # never nested-container in split
            assert "fsGroup" not in template["spec"].get("securityContext", {})
    routes = [o for o in built["openshift/split"] if o["kind"] == "Route"]
    assert [(r["spec"]["to"]["name"], r["spec"]["port"]["targetPort"]) for r in routes] == [
        (specs[0].server_name, "https")]  # the one server name, as clients know it
    monolith = next(o for o in built["openshift/monolithic-userns"] if pod_spec(o))
    annotations = monolith["spec"]["template"]["metadata"]["annotations"]
    assert annotations["openshift.io/required-scc"] == "nested-container"


def test_secrets_are_files_never_env(specs: tuple[Any, list[Any]],
                                     built: dict[str, list[dict[str, Any]]]) -> None:
    by_name = {s.name: s for s in specs[1]}
    secret = next(o for o in built["split"] if o["kind"] == "Secret")
    for obj in built["split"]:
        spec = pod_spec(obj)
        if spec is None:
            continue
        members = [by_name[c["name"]] for c in spec["containers"]]
        for container, service in zip(spec["containers"], members, strict=True):
            mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
            for declared in service.secrets:
                mount = mounts[declared.path]
                assert mount["subPath"] == declared.name and mount["readOnly"] is True
            assert all("valueFrom" not in e for e in container.get("env", []))
        volumes = [v for v in spec.get("volumes", []) if "secret" in v]
        for volume in volumes:
            assert volume["secret"]["secretName"] == secret["metadata"]["name"]
            assert {i["key"] for i in volume["secret"]["items"]} == {
                s.name for m in members for s in m.secrets}


def test_services_map_standard_ports_tcp_and_udp(specs: tuple[Any, list[Any]],
                                                 built: dict[str, list[dict[str, Any]]]) -> None:
    services = {o["metadata"]["name"]: o for o in built["split"] if o["kind"] == "Service"}
    for spec in (s for s in specs[1] if not s.serves_name):
        ports = {(p["port"], p["targetPort"], p["protocol"])
                 for p in services[spec.name]["spec"]["ports"]}
        standard = {(p.service_port, p.port, p.protocol.upper()) for p in spec.ports}
        in_stack = {(p.port, p.port, p.protocol.upper()) for p in spec.ports}
        assert ports == standard | in_stack


def test_the_server_name_reaches_each_port_on_the_pod_that_serves_it(
        specs: tuple[Any, list[Any]], built: dict[str, list[dict[str, Any]]]) -> None:
    """The one Service of the server name selects the ldap and http pods; as a Service's
    endpoints for a named targetPort are the selected pods that declare that name (with
    its protocol), each standard port reaches exactly the container the spec routes it
    to: 389/636 ldap, 88/464 the kdc (in ldap's pod), 80/443 http."""
    project, services = specs
    server = next(s for s in services if s.serves_name)
    for overlay in ("split", "split-userns"):
        service = next(o for o in built[overlay] if o["kind"] == "Service"
                       and o["metadata"]["name"] == project.server_name)
        selector = service["spec"]["selector"]
        pods = {o["metadata"]["name"]: pod_spec(o) for o in built[overlay]
                if pod_spec(o) is not None and selector.items()
                <= o["spec"]["template"]["metadata"]["labels"].items()}
        assert set(pods) == {"ldap", "http"}, overlay
        for port in service["spec"]["ports"]:
            endpoints = [(pod, c["name"], p["containerPort"]) for pod, spec in pods.items()
                         for c in spec["containers"] for p in c.get("ports", [])
                         if p["name"] == port["targetPort"]
                         and p["protocol"] == port["protocol"]]
            route = next(p for p in server.ports if p.name == port["name"]).route
            assert [e[1] for e in endpoints] == [route.service], (overlay, port, endpoints)
    policies = {o["metadata"]["name"]: o["spec"] for o in built["split"]
                if o["kind"] == "NetworkPolicy"}
    open_to_all = {(p["port"], p["protocol"]) for rule in policies["ldap-allow"]["ingress"]
                   if "from" not in rule for p in rule["ports"]}
    assert {(3389, "TCP"), (3636, "TCP")} <= open_to_all  # clients enrol over LDAP(S)
    ca_ingress = policies["ca-allow"]["ingress"]
    assert all("from" in rule for rule in ca_ingress), "Dogtag stays for its own clients"


def test_in_stack_addresses_of_the_specs_resolve_through_services(
        specs: tuple[Any, list[Any]], built: dict[str, list[dict[str, Any]]]) -> None:
    """``ldap://ldap:3389`` in the kdc spec must reach ldap through the Service ``ldap``."""
    services = {o["metadata"]["name"]: o for o in built["split"] if o["kind"] == "Service"}
    addresses = [urlsplit(value) for spec in specs[1] for value in spec.environment.values()
                 if "://" in value]
    assert addresses, "no in-stack URL in the specs: the test checks nothing"
    for address in addresses:
        published = {p["port"] for p in services[address.hostname]["spec"]["ports"]}
        assert address.port in published, address.geturl()


def test_ldap_reachable_only_from_its_clients(built: dict[str, list[dict[str, Any]]]) -> None:
    policies = {o["metadata"]["name"]: o for o in built["split"]
                if o["kind"] == "NetworkPolicy"}
    deny = policies["ipabuild-default-deny"]["spec"]
    assert deny["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in deny
    rule = policies["ldap-allow"]["spec"]["ingress"][0]
    sources = {f["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for f in rule["from"]}
    # The services whose specs use ldap: ca, http (the API binds as the calling user),
    # and kdc, which runs in ldap's own pod.
    assert sources == {"ldap", "ca", "http"}
    kdc = policies["kdc-allow"]["spec"]
    assert kdc["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "ldap"
    assert "from" not in kdc["ingress"][0]  # public on its ports


def test_kdc_shares_ldaps_pod_and_socket_volume(built: dict[str, list[dict[str, Any]]]) -> None:
    """ipa-kdb reaches 389-ds only over LDAPI: kdc is a container of ldap's pod, the socket
    directory an emptyDir both mount, and the kdc Service selects ldap's pod."""
    ldap = next(o for o in built["split-userns"]
                if o["kind"] == "StatefulSet" and o["metadata"]["name"] == "ldap")
    spec = pod_spec(ldap)
    assert [c["name"] for c in spec["containers"]] == ["ldap", "kdc"]
    assert spec["hostUsers"] is False
    shared = [v["name"] for v in spec["volumes"] if "emptyDir" in v and v["name"] == "ldapi"]
    assert shared == ["ldapi"]
    for container in spec["containers"]:
        assert {"name": "ldapi", "mountPath": "/run/ipa-ldapi"} in container["volumeMounts"]
    claims = [t["metadata"]["name"] for t in ldap["spec"]["volumeClaimTemplates"]]
    assert claims == ["data"]  # the socket directory holds no state
    assert not any(o["kind"] in ("Deployment", "StatefulSet") and o["metadata"]["name"] == "kdc"
                   for o in built["split"])
    service = next(o for o in built["split"] if o["kind"] == "Service"
                   and o["metadata"]["name"] == "kdc")
    assert service["spec"]["selector"]["app.kubernetes.io/name"] == "ldap"


def test_registry_and_tag_land_in_the_overlays(specs: tuple[Any, list[Any]]) -> None:
    project, services = specs
    files = render_manifests(project, services,
                             ManifestOptions("registry.example:5000/ipa", "v9"))
    images = yaml.safe_load(files["overlays/split/kustomization.yaml"].split("\n", 2)[2])
    assert {i["newName"] for i in images["images"]} == {
        f"registry.example:5000/ipa/{s.name}" for s in services if not s.serves_name}
    assert {i["newTag"] for i in images["images"]} == {"v9"}


# --- the PSS check itself must fail on any one broken rule ---------------------------

def _set(path: list[Any], value: Any) -> Any:
    def mutate(obj: dict[str, Any]) -> None:
        target = obj
        for key in path[:-1]:
            target = target.setdefault(key, {}) if isinstance(key, str) else target[key]
        target[path[-1]] = value
    return mutate


def _delete(path: list[Any]) -> Any:
    def mutate(obj: dict[str, Any]) -> None:
        target = obj
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return mutate


POD = ["spec", "template", "spec"]
C0 = [*POD, "containers", 0]
SC = [*C0, "securityContext"]
MUTATIONS = {
    "hostNetwork": _set([*POD, "hostNetwork"], True),
    "hostPID": _set([*POD, "hostPID"], True),
    "hostIPC": _set([*POD, "hostIPC"], True),
    "hostPath volume": lambda o: o["spec"]["template"]["spec"].setdefault("volumes", []).append(
        {"name": "host", "hostPath": {"path": "/"}}),
    "unsafe sysctl": _set([*POD, "securityContext", "sysctls"],
                          [{"name": "kernel.msgmax", "value": "1"}]),
    "privileged": _set([*SC, "privileged"], True),
    "privilege escalation": _set([*SC, "allowPrivilegeEscalation"], True),
    "escalation unset": _delete([*SC, "allowPrivilegeEscalation"]),
    "keeps capabilities": _set([*SC, "capabilities"], {"drop": ["NET_RAW"]}),
    "adds SYS_ADMIN": _set([*SC, "capabilities", "add"], ["SYS_ADMIN"]),
    "seccomp Unconfined": _set([*SC, "seccompProfile"], {"type": "Unconfined"}),
    "seccomp unset": lambda o: (_delete([*SC, "seccompProfile"])(o),
                                _delete([*POD, "securityContext", "seccompProfile"])(o)),
    "runAsNonRoot false": _set([*SC, "runAsNonRoot"], False),
    "runAsNonRoot unset": lambda o: (_delete([*SC, "runAsNonRoot"])(o),
                                     _delete([*POD, "securityContext", "runAsNonRoot"])(o)),
    "runAsUser 0": _set([*SC, "runAsUser"], 0),
    "runAsUser pinned": _set([*SC, "runAsUser"], 1000),
    "pod runAsUser pinned": _set([*POD, "securityContext", "runAsUser"], 1000),
    "writable root": _set([*SC, "readOnlyRootFilesystem"], False),
    "hostPort": _set([*C0, "ports", 0, "hostPort"], 389),
    "secret env": _set([*C0, "env"], [{"name": "PW", "valueFrom": {
        "secretKeyRef": {"name": "s", "key": "k"}}}]),
}


@pytest.mark.parametrize("rule", sorted(MUTATIONS))
def test_pss_check_fails_on_each_broken_rule(rule: str,
                                             built: dict[str, list[dict[str, Any]]]) -> None:
    ldap = next(o for o in built["split-userns"]
                if o["kind"] == "StatefulSet" and o["metadata"]["name"] == "ldap")
    assert violations(ldap) == []
    broken = copy.deepcopy(ldap)
    MUTATIONS[rule](broken)
    assert violations(broken), f"the check missed: {rule}"


def test_the_root_init_exception_covers_nothing_else(specs: tuple[Any, list[Any]]) -> None:
    """The exemption only allows UID 0 with namespaced capabilities, only for init steps."""
    from ipabuild.emit.manifests.split import workload

    # No split service has one any more (test_split_declares_no_root_step): the machinery
    # is proven on the CA's spec given such a step, as a spec may still declare it.
    ca = next(s for s in specs[1] if s.name == "ca")
    assert ca.init is not None
    root = ca.model_copy(update={"init": ca.init.model_copy(
        update={"root_in_user_namespace": True, "reason": "a test"})})
    obj = workload(root)
    allowed = _root_init([root])
    assert violations(obj, allowed) == []
    assert violations(obj)  # without the exemption the init step fails the check
    init = obj["spec"]["template"]["spec"]["initContainers"][0]
    assert init["securityContext"]["capabilities"]["add"] == ROOT_INIT_CAPABILITIES
    for key, value in (("allowPrivilegeEscalation", True), ("readOnlyRootFilesystem", False),
                       ("capabilities", {"drop": ["ALL"], "add": ["SYS_ADMIN"]}),
                       ("seccompProfile", {"type": "Unconfined"}), ("privileged", True)):
        broken = copy.deepcopy(obj)
        broken["spec"]["template"]["spec"]["initContainers"][0]["securityContext"][key] = value
        assert violations(broken, allowed), key
    broken = copy.deepcopy(obj)  # the main container never gets the exemption
    broken["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsUser"] = 0
    assert violations(broken, allowed)

