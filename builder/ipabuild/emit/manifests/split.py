"""One workload per service for the split overlays: StatefulSet or Deployment, and a Service.

Every container meets the Pod Security Standards "restricted" profile: non-root (no UID
pinned: OpenShift assigns one, plain Kubernetes uses the image's numeric USER), no
privilege escalation, all capabilities dropped, RuntimeDefault seccomp, read-only root
with an emptyDir for each tmpfs path, secrets as read-only files from a Secret volume.
The one exception is a spec's ``init`` with ``root_in_user_namespace``: an init container
running as UID 0, which is only acceptable with ``hostUsers: false`` (split-userns).
"""

from __future__ import annotations

import math
from typing import Any

from ipabuild.emit.manifests.common import (
    ANNOTATION_ROOT_INIT,
    ANNOTATION_SERVICE,
    CONFIG_MAP,
    PART_OF,
    ROOT_INIT_CAPABILITIES,
    SECRET,
    SECRET_MODE,
    SERVER_LABEL,
    STORAGE,
    image_name,
    labels,
    needs_root_init,
    selector,
    server_targets,
    tmpfs_volume,
)
from ipabuild.spec.model import Service

SECRETS_VOLUME = "secrets"


def container_security(read_only_root: bool) -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": read_only_root,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def resources(service: Service) -> dict[str, Any]:
    """The spec's requests and limits."""
    wanted = service.resources
    limits = {"cpu": wanted.cpu_limit}
    if wanted.memory_limit is not None:  # else the spec says why (no_memory_limit_because)
        limits["memory"] = wanted.memory_limit
    return {"requests": {"cpu": wanted.cpu_request, "memory": wanted.memory_request},
            "limits": limits}


def _probe(service: Service, failures: int) -> dict[str, Any]:
    check = service.healthcheck
    assert check is not None
    return {"exec": {"command": list(check.command)}, "periodSeconds": check.interval,
            "timeoutSeconds": check.timeout, "failureThreshold": failures}


def _probes(service: Service) -> dict[str, Any]:
    check = service.healthcheck
    if check is None:
        return {}
    # The startup probe covers the spec's start_period; then readiness and liveness take over.
    startup = math.ceil(check.start_period / check.interval) + check.retries
    return {"startupProbe": _probe(service, startup),
            "readinessProbe": _probe(service, check.retries),
            "livenessProbe": _probe(service, check.retries)}


def _tmpfs_name(service: Service, path: str, host: str) -> str:
    """A tmpfs emptyDir's name; a guest container's own carry its name (no sharing)."""
    name = tmpfs_volume(path)
    return name if service.name == host else f"{service.name}-{name}"[:63].rstrip("-")


def _mounts(service: Service, host: str) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = [{"name": v.name, "mountPath": v.path}
                                    for v in service.volumes]
    mounts += [{"name": v.volume, "mountPath": v.path} for v in service.shared_volumes]
    mounts += [{"name": _tmpfs_name(service, p, host), "mountPath": p} for p in service.tmpfs]
    mounts += [{"name": SECRETS_VOLUME, "mountPath": s.path, "subPath": s.name,
                "readOnly": True} for s in service.secrets]
    return mounts


def _pod_volumes(members: list[Service]) -> list[dict[str, Any]]:
    """The pod's volumes: each container's tmpfs, the host's ephemeral volumes (shared
    with its guests), one Secret volume with every item a container mounts."""
    host = members[0].name
    volumes: list[dict[str, Any]] = [{"name": _tmpfs_name(m, p, host), "emptyDir": {}}
                                     for m in members for p in m.tmpfs]
    volumes += [{"name": v.name, "emptyDir": {}} for v in members[0].volumes if v.ephemeral]
    secret_names = sorted({s.name for m in members for s in m.secrets})
    if secret_names:
        volumes.append({"name": SECRETS_VOLUME, "secret": {
            "secretName": SECRET, "defaultMode": SECRET_MODE, "optional": False,
            "items": [{"key": name, "path": name} for name in secret_names]}})
    return volumes


def pod_members(service: Service, services: list[Service]) -> list[Service]:
    """The service and the services that run as further containers of its pod (``pod:``)."""
    return [service, *(s for s in services if s.pod == service.name)]


def _container(service: Service, host: str | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": service.name,
        "image": image_name(service.name),
        "command": list(service.entrypoint),
        "envFrom": [{"configMapRef": {"name": CONFIG_MAP}}],
        "resources": resources(service),
        "securityContext": container_security(service.read_only_root),
        "volumeMounts": _mounts(service, host or service.name),
    }
    if service.command:
        container["args"] = list(service.command)
    if service.environment:
        container["env"] = [{"name": k, "value": v}
                            for k, v in sorted(service.environment.items())]
    if service.ports:
        container["ports"] = [{"name": p.name, "containerPort": p.port,
                               "protocol": p.protocol.upper()} for p in service.ports]
    container.update(_probes(service))
    return container


def _init_container(service: Service) -> dict[str, Any]:
    assert service.init is not None
    main = _container(service)
    init: dict[str, Any] = {k: main[k] for k in ("image", "envFrom", "resources", "volumeMounts")
                            if k in main}
    init.update({"name": f"{service.name}-init", "command": list(service.init.command)})
    if "env" in main:
        init["env"] = main["env"]
    security = container_security(service.read_only_root)
    if service.init.root_in_user_namespace:
        security.update({"runAsNonRoot": False, "runAsUser": 0, "runAsGroup": 0})
        security["capabilities"] = {"drop": ["ALL"], "add": list(ROOT_INIT_CAPABILITIES)}
    init["securityContext"] = security
    return init


def _pod_template(service: Service, members: list[Service],
                  serves_name: bool = False) -> dict[str, Any]:
    annotations = {ANNOTATION_SERVICE: service.name}
    for guest in members[1:]:
        annotations[f"{ANNOTATION_SERVICE}.{guest.name}"] = (
            f"{guest.name} runs in this pod: it shares {service.name}'s "
            + ", ".join(v.volume for v in guest.shared_volumes)
            + " volume, whose socket peer credentials need one user namespace")
    if needs_root_init(service):
        assert service.init is not None
        annotations[ANNOTATION_ROOT_INIT] = (
            f"{service.name}-init runs as UID 0 and needs hostUsers: false (the split-userns "
            f"overlay); without a user namespace it is not admitted. Reason: "
            f"{service.init.reason or 'see the service spec'}")
    pod_security: dict[str, Any] = {"runAsNonRoot": True,
                                    "seccompProfile": {"type": "RuntimeDefault"}}
    sysctls = {name: value for m in members for name, value in m.sysctls.items()}
    if sysctls:
        # One network namespace per pod: its members' sysctls together.
        pod_security["sysctls"] = [{"name": n, "value": v} for n, v in sorted(sysctls.items())]
    if any(m.volumes or m.shared_volumes for m in members):
        # Volumes group-owned by GID 0, the runtime group of every image (OpenShift replaces
        # this with the namespace's fsGroup: see components/openshift).
        pod_security.update({"fsGroup": 0, "fsGroupChangePolicy": "OnRootMismatch"})
    spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security,
        "containers": [_container(m, service.name) for m in members],
    }
    if service.init is not None:
        spec["initContainers"] = [_init_container(service)]
    volumes = _pod_volumes(members)
    if volumes:
        spec["volumes"] = volumes
    pod_labels = labels(service.name)
    if serves_name:
        pod_labels[SERVER_LABEL] = "true"
    return {"metadata": {"labels": pod_labels, "annotations": annotations}, "spec": spec}


def workload(service: Service, services: list[Service] | None = None) -> dict[str, Any]:
    """A StatefulSet (the service has persistent volumes) or a Deployment."""
    members = pod_members(service, services or [service])
    metadata: dict[str, Any] = {"name": service.name, "labels": labels(service.name)}
    spec: dict[str, Any] = {"replicas": 1,
                            "selector": {"matchLabels": selector(service.name)},
                            "template": _pod_template(
                                service, members, service.name in server_targets(
                                    services or [service]))}
    persistent = [v for v in service.volumes if not v.ephemeral]
    if not persistent:
        spec["strategy"] = {"type": "Recreate"}
        return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata,
                "spec": spec}
    spec["serviceName"] = service.name
    spec["volumeClaimTemplates"] = [{
        "metadata": {"name": v.name, "labels": labels(service.name)},
        "spec": {"accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": STORAGE}}},
    } for v in persistent]
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": metadata, "spec": spec}


def service_object(service: Service) -> dict[str, Any]:
    """The Service mapping the standard ports onto the container's unprivileged ones.

    It also publishes each container port as itself (named ``pod-<port>-<protocol>``):
    the specs' in-stack addresses (``ldap://ldap:3389``, ``https://ca:8443``) name the
    container ports, which is what works between podman containers, and through this
    Service the same value works unchanged in a cluster. NetworkPolicies match the pod
    ports either way, so this opens nothing new.
    """
    ports = [{"name": p.name, "port": p.service_port, "targetPort": p.port,
              "protocol": p.protocol.upper()} for p in service.ports]
    ports += [{"name": f"pod-{p.port}-{p.protocol}", "port": p.port, "targetPort": p.port,
               "protocol": p.protocol.upper()}
              for p in service.ports if p.port != p.service_port]
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": service.name, "labels": labels(service.name)},
        "spec": {"selector": selector(service.pod or service.name), "ports": ports},
    }


def server_service(service: Service, server_name: str) -> dict[str, Any]:
    """The one server name FreeIPA's clients know: a Service without pods of its own whose
    ports name their targets' ports (``targetPort`` by name), so each port reaches only
    the pods that declare that name (ldap's, kdc's in ldap's pod, http's, ca's)."""
    ports = [{"name": p.name, "port": p.service_port, "targetPort": p.route.port,
              "protocol": p.protocol.upper()} for p in service.ports if p.route]
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": server_name, "labels": labels(service.name),
                     "annotations": {ANNOTATION_SERVICE: service.name}},
        "spec": {"selector": {"app.kubernetes.io/part-of": PART_OF, SERVER_LABEL: "true"},
                 "ports": ports},
    }


def service_documents(service: Service, services: list[Service],
                      server_name: str = "ipa") -> list[dict[str, Any]]:
    """The service's workload (none for a guest of another pod) and its Service; for the
    service that stands for the server name, only the Service of that name (locally its
    proxy container does what the Service does in a cluster)."""
    if service.serves_name:
        return [server_service(service, server_name)]
    documents = [] if service.pod else [workload(service, services)]
    if service.ports:
        documents.append(service_object(service))
    return documents
