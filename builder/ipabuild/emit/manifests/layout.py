"""The kustomize tree: base, secrets component, components, overlays, as path -> objects.

Paths are relative to ``kustomize/``. Each value is a list of documents (one file, many
``---`` documents). Deterministic: every list comes from the specs in a fixed order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ipabuild.emit.manifests import monolith
from ipabuild.emit.manifests.common import (
    ANNOTATION_SCC,
    CONFIG_MAP,
    MANAGER,
    PART_OF,
    SECRET,
    check_service,
    image_name,
    labels,
    needs_root_init,
)
from ipabuild.emit.manifests.network import network_policies, web_fronts
from ipabuild.emit.manifests.split import service_documents
from ipabuild.spec.model import Project, Service

KUSTOMIZATION = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization"}
COMPONENT = {"apiVersion": "kustomize.config.k8s.io/v1alpha1", "kind": "Component"}
COMMON_LABELS = [{"pairs": {"app.kubernetes.io/part-of": PART_OF,
                            "app.kubernetes.io/managed-by": MANAGER},
                  "includeSelectors": False}]
OVERLAYS = ["split", "split-userns", "monolithic-userns"]
SECRETS_GITIGNORE = ("# Secret values written by `ipabuild secrets --out kustomize/secrets`:"
                     " never committed.\n*\n!.gitignore\n!kustomization.yaml\n")

Tree = dict[str, list[dict[str, Any]]]


@dataclass(frozen=True)
class ManifestOptions:
    """Where the images come from (``<registry>/<service>:<tag>``, the monolith's tag) and
    the namespace of every object."""

    registry: str
    tag: str
    monolith_tag: str = monolith.DEFAULT_TAG
    namespace: str = "ipabuild"
    # service -> sha256 digest: that image is named by digest instead of the tag
    digests: dict[str, str] = field(default_factory=dict)
    monolith_digest: str = ""


def _image(name: str, new_name: str, tag: str, digest: str) -> dict[str, str]:
    """A kustomize `images:` entry: by digest when there is one, else by tag."""
    entry = {"name": name, "newName": new_name}
    entry.update({"digest": digest} if digest else {"newTag": tag})
    return entry


def _escape(key: str) -> str:
    """A JSON-pointer segment (RFC 6901)."""
    return key.replace("~", "~0").replace("/", "~1")


def _patch(kind: str, name: str | None, operations: list[dict[str, Any]]) -> dict[str, Any]:
    target: dict[str, Any] = {"kind": kind}
    if name:
        target["name"] = name
    return {"target": target, "patch": _dump_ops(operations)}


def _dump_ops(operations: list[dict[str, Any]]) -> str:
    import yaml

    return yaml.safe_dump(operations, sort_keys=True, default_flow_style=False)


def _kind(service: Service) -> str:
    return "StatefulSet" if any(not v.ephemeral for v in service.volumes) else "Deployment"


def _userns_component() -> list[dict[str, Any]]:
    add = [{"op": "add", "path": "/spec/template/spec/hostUsers", "value": False}]
    return [{**COMPONENT, "patches": [_patch(k, None, add)
                                      for k in ("Deployment", "StatefulSet")]}]


def _crio_component() -> list[dict[str, Any]]:
    add = [{"op": "add", "value": "auto", "path": "/spec/template/metadata/annotations/"
            + _escape("io.kubernetes.cri-o.userns-mode")}]
    return [{**COMPONENT, "patches": [_patch(k, None, add)
                                      for k in ("Deployment", "StatefulSet")]}]


def _route(name: str, port: str) -> dict[str, Any]:
    return {"apiVersion": "route.openshift.io/v1", "kind": "Route",
            "metadata": {"name": name, "labels": labels(name)},
            "spec": {"to": {"kind": "Service", "name": name, "weight": 100},
                     "port": {"targetPort": port},
                     "tls": {"termination": "passthrough",
                             "insecureEdgeTerminationPolicy": "Redirect"}}}


def _scc_ops(scc: str, remove_fs_group: bool) -> list[dict[str, Any]]:
    ops = [{"op": "add", "value": scc,
            "path": "/spec/template/metadata/annotations/" + _escape(ANNOTATION_SCC)}]
    if remove_fs_group:  # OpenShift assigns the namespace's fsGroup itself
        ops.append({"op": "remove", "path": "/spec/template/spec/securityContext/fsGroup"})
    return ops


def _openshift_split(services: list[Service], userns: bool, server_name: str) -> Tree:
    patches = []
    for service in services:
        if service.pod or service.serves_name:
            continue  # another pod's container (its pod's patch covers it), or a Service
        if userns:
            scc = "nested-container" if needs_root_init(service) else "restricted-v3"
        else:
            scc = "restricted-v2"
        patches.append(_patch(_kind(service), service.name,
                              _scc_ops(scc, bool(service.volumes))))
    routes = []
    server = next((s for s in services if s.serves_name), None)
    https_of_server = next((p.name for p in server.ports if p.service_port == 443),
                           None) if server else None
    if server and https_of_server:  # the server name's Service, as clients know it
        routes.append(_route(server_name, https_of_server))
    else:
        for front in web_fronts(services):
            https = next(p.name for p in front.ports if p.service_port == 443)
            routes.append(_route(front.name, https))
    component: dict[str, Any] = {**COMPONENT, "patches": patches}
    tree: Tree = {}
    if routes:
        component["resources"] = ["routes.yaml"]
        tree["routes.yaml"] = routes
    tree["kustomization.yaml"] = [component]
    return tree


def _openshift_monolith(services: list[Service]) -> Tree:
    https = next((p["name"] for p in monolith.standard_ports(services) if p["port"] == 443),
                 None)
    component: dict[str, Any] = {**COMPONENT, "patches": [
        _patch("StatefulSet", monolith.NAME, _scc_ops("nested-container", False))]}
    tree: Tree = {"kustomization.yaml": [component]}
    if https:
        component["resources"] = ["routes.yaml"]
        tree["routes.yaml"] = [_route(monolith.NAME, https)]
    return tree


def build_tree(project: Project, services: list[Service], options: ManifestOptions) -> Tree:
    """Every generated file under kustomize/, as documents."""
    known = {s.name for s in services}
    for service in services:
        check_service(service, known)
    tree: Tree = {}
    tree["base/kustomization.yaml"] = [{**KUSTOMIZATION, "labels": COMMON_LABELS,
                                        "resources": ["config.yaml"]}]
    tree["base/config.yaml"] = [{
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": CONFIG_MAP},
        "data": {"IPA_DOMAIN": project.domain, "IPA_REALM": project.realm,
                 "IPA_SUFFIX": project.suffix}}]
    secret_files = sorted({s.name for service in services for s in service.secrets})
    tree["secrets/kustomization.yaml"] = [{**COMPONENT, "secretGenerator": [
        {"name": SECRET, "type": "Opaque", "files": secret_files}]}]
    tree["components/userns/kustomization.yaml"] = _userns_component()
    tree["components/userns-crio/kustomization.yaml"] = _crio_component()
    for mode, part in (("split", _openshift_split(services, False, project.server_name)),
                       ("split-userns", _openshift_split(services, True, project.server_name)),
                       ("monolithic-userns", _openshift_monolith(services))):
        for name, documents in part.items():
            tree[f"components/openshift/{mode}/{name}"] = documents

    split_files = [f"{s.name}.yaml" for s in services] + ["network-policies.yaml"]
    for service in services:
        tree[f"overlays/split/{service.name}.yaml"] = service_documents(
            service, services, project.server_name)
    tree["overlays/split/network-policies.yaml"] = network_policies(services)
    registry = options.registry.rstrip("/")
    tree["overlays/split/kustomization.yaml"] = [{
        **KUSTOMIZATION, "namespace": options.namespace, "labels": COMMON_LABELS,
        "resources": ["../../base", *split_files],
        "components": ["../../secrets"],
        "images": [_image(image_name(s.name), f"{registry}/{s.name}", options.tag,
                          options.digests.get(s.name, ""))
                   for s in services if not s.serves_name]}]
    tree["overlays/split-userns/kustomization.yaml"] = [{
        **KUSTOMIZATION, "resources": ["../split"], "components": ["../../components/userns"]}]
    tree["overlays/monolithic-userns/freeipa.yaml"] = monolith.monolith_documents(project,
                                                                                  services)
    tree["overlays/monolithic-userns/network-policies.yaml"] = (
        monolith.monolith_network_policies(services))
    tree["overlays/monolithic-userns/kustomization.yaml"] = [{
        **KUSTOMIZATION, "namespace": options.namespace, "labels": COMMON_LABELS,
        "resources": ["../../base", "freeipa.yaml", "network-policies.yaml"],
        "components": ["../../secrets", "../../components/userns"],
        "images": [_image(monolith.IMAGE, monolith.UPSTREAM_IMAGE, options.monolith_tag,
                          options.monolith_digest)]}]
    for mode in OVERLAYS:
        # The namespace again: the OpenShift component adds resources (the Route) here.
        tree[f"overlays/openshift/{mode}/kustomization.yaml"] = [{
            **KUSTOMIZATION, "namespace": options.namespace, "resources": [f"../../{mode}"],
            "components": [f"../../../components/openshift/{mode}"]}]
    return tree
