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

from ipabuild.manifests.common import (
    ANNOTATION_ROOT_INIT,
    ANNOTATION_SERVICE,
    CONFIG_MAP,
    RESOURCES,
    ROOT_INIT_CAPABILITIES,
    SECRET,
    SECRET_MODE,
    STORAGE,
    image_name,
    labels,
    needs_root_init,
    selector,
    tmpfs_volume,
)
from ipabuild.spec import Service

SECRETS_VOLUME = "secrets"


def container_security(read_only_root: bool) -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": read_only_root,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


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


def _mounts(service: Service) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = [{"name": v.name, "mountPath": v.path}
                                    for v in service.volumes]
    mounts += [{"name": tmpfs_volume(p), "mountPath": p} for p in service.tmpfs]
    mounts += [{"name": SECRETS_VOLUME, "mountPath": s.path, "subPath": s.name,
                "readOnly": True} for s in service.secrets]
    return mounts


def _pod_volumes(service: Service) -> list[dict[str, Any]]:
    volumes: list[dict[str, Any]] = [{"name": tmpfs_volume(p), "emptyDir": {}}
                                     for p in service.tmpfs]
    if service.secrets:
        volumes.append({"name": SECRETS_VOLUME, "secret": {
            "secretName": SECRET, "defaultMode": SECRET_MODE, "optional": False,
            "items": [{"key": s.name, "path": s.name} for s in service.secrets]}})
    return volumes


def _container(service: Service) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": service.name,
        "image": image_name(service.name),
        "command": list(service.entrypoint),
        "envFrom": [{"configMapRef": {"name": CONFIG_MAP}}],
        "resources": RESOURCES,
        "securityContext": container_security(service.read_only_root),
        "volumeMounts": _mounts(service),
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


def _pod_template(service: Service) -> dict[str, Any]:
    annotations = {ANNOTATION_SERVICE: service.name}
    if needs_root_init(service):
        assert service.init is not None
        annotations[ANNOTATION_ROOT_INIT] = (
            f"{service.name}-init runs as UID 0 and needs hostUsers: false (the split-userns "
            f"overlay); without a user namespace it is not admitted. Reason: "
            f"{service.init.reason or 'see the service spec'}")
    pod_security: dict[str, Any] = {"runAsNonRoot": True,
                                    "seccompProfile": {"type": "RuntimeDefault"}}
    if service.volumes:
        # Volumes group-owned by GID 0, the runtime group of every image (OpenShift replaces
        # this with the namespace's fsGroup: see components/openshift).
        pod_security.update({"fsGroup": 0, "fsGroupChangePolicy": "OnRootMismatch"})
    spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security,
        "containers": [_container(service)],
    }
    if service.init is not None:
        spec["initContainers"] = [_init_container(service)]
    volumes = _pod_volumes(service)
    if volumes:
        spec["volumes"] = volumes
    return {"metadata": {"labels": labels(service.name), "annotations": annotations},
            "spec": spec}


def workload(service: Service) -> dict[str, Any]:
    """A StatefulSet (the service has volumes) or a Deployment."""
    metadata: dict[str, Any] = {"name": service.name, "labels": labels(service.name)}
    spec: dict[str, Any] = {"replicas": 1,
                            "selector": {"matchLabels": selector(service.name)},
                            "template": _pod_template(service)}
    if not service.volumes:
        spec["strategy"] = {"type": "Recreate"}
        return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata,
                "spec": spec}
    spec["serviceName"] = service.name
    spec["volumeClaimTemplates"] = [{
        "metadata": {"name": v.name, "labels": labels(service.name)},
        "spec": {"accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": STORAGE}}},
    } for v in service.volumes]
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
        "spec": {"selector": selector(service.name), "ports": ports},
    }


def service_documents(service: Service) -> list[dict[str, Any]]:
    documents = [workload(service)]
    if service.ports:
        documents.append(service_object(service))
    return documents
