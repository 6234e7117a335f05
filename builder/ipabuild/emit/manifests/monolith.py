"""The monolithic overlay: upstream ``quay.io/freeipa/freeipa-server`` as one StatefulSet.

systemd runs as UID 0 *inside the pod's user namespace* (the userns component sets
``hostUsers: false``); /data is a PersistentVolumeClaim; the root filesystem is read-only
with emptyDirs where systemd writes. The admin and Directory Manager passwords reach the
installer as a file: an init container writes ``/data/ipa-server-install-options`` from
the mounted secrets (never environment variables). Its ports are the standard ports of
every split service, taken from the specs.
"""

from __future__ import annotations

from typing import Any

from ipabuild.core.errors import ConfigError
from ipabuild.emit.manifests.common import (
    ANNOTATION_SERVICE,
    CONFIG_MAP,
    SECRET,
    SECRET_MODE,
    labels,
    selector,
)
from ipabuild.emit.manifests.network import DNS, default_deny
from ipabuild.spec.model import Project, Service

NAME = "freeipa"
IMAGE = "freeipa-server"  # placeholder rewritten by the overlay's `images:`
UPSTREAM_IMAGE = "quay.io/freeipa/freeipa-server"
DEFAULT_TAG = "almalinux-10"
STORAGE = "10Gi"
OPTIONS_FILE = "/data/ipa-server-install-options"
# installer option -> the spec secret that holds its value
PASSWORD_OPTIONS = {"--admin-password": "admin-password", "--ds-password": "ldap-dm-password"}
EMPTY_DIRS = ["/run", "/run/lock", "/tmp", "/var/log/journal"]
# What systemd and the daemons it starts as root keep, namespaced to the pod's own user
# namespace: podman's default set (containers.conf default_capabilities), which the local
# monolith runs with. Everything else (NET_RAW, MKNOD, AUDIT_WRITE, ...) is dropped.
CAPABILITIES = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "NET_BIND_SERVICE",
                "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"]
HEALTH = ["systemctl", "status", "ipa"]
# ipa-server-install (the CA step alone takes minutes) runs before ipa.service is up: the
# startup probe allows it 30 minutes, then liveness restarts a pod whose IPA stopped.
INSTALL_SECONDS = 1800


def standard_ports(services: list[Service]) -> list[dict[str, Any]]:
    """Every (service_port, protocol) of the split services once, in spec order; the
    server name's own names first (a port's name as FreeIPA's clients know it), its
    internal routes (Dogtag's ports, not public) left out as the split services' are."""
    seen: dict[tuple[int, str], str] = {}
    servers = [s for s in services if s.serves_name]
    for service in [*servers, *(s for s in services if not s.serves_name)]:
        for port in service.ports:
            if port.route is not None and not port.route.public:
                continue
            seen.setdefault((port.service_port, port.protocol), port.name)
    return [{"name": name, "port": number, "protocol": protocol.upper()}
            for (number, protocol), name in seen.items()]


def _options_script() -> str:
    values = " ".join(f'"$(cat /run/secrets/{secret})"' for secret in PASSWORD_OPTIONS.values())
    formats = "".join(f"{option}=%s\\n" for option in PASSWORD_OPTIONS)
    return (f"test -e {OPTIONS_FILE} || {{ umask 077; "
            f"printf -- '{formats}' {values} > {OPTIONS_FILE}; }}")


def monolith_documents(project: Project, services: list[Service]) -> list[dict[str, Any]]:
    declared = {s.name for service in services for s in service.secrets}
    missing = sorted(set(PASSWORD_OPTIONS.values()) - declared)
    if missing:
        raise ConfigError("services/*/service.yaml",
                          f"the monolith needs the secrets {', '.join(missing)}, which no "
                          "service declares", None, "declare them under a service's `secrets`")
    ports = standard_ports(services)
    secret_mounts = [{"name": "secrets", "mountPath": f"/run/secrets/{name}", "subPath": name,
                      "readOnly": True} for name in PASSWORD_OPTIONS.values()]
    root_in_userns = {"runAsNonRoot": False, "runAsUser": 0, "runAsGroup": 0,
                      "readOnlyRootFilesystem": True,
                      "seccompProfile": {"type": "RuntimeDefault"}}
    volumes: list[dict[str, Any]] = [
        {"name": f"tmpfs-{path.strip('/').replace('/', '-')}", "emptyDir": {}}
        for path in EMPTY_DIRS]
    volumes.append({"name": "dev-shm", "emptyDir": {"medium": "Memory"}})
    volumes.append({"name": "secrets", "secret": {
        "secretName": SECRET, "defaultMode": SECRET_MODE, "optional": False,
        "items": [{"key": n, "path": n} for n in PASSWORD_OPTIONS.values()]}})
    mounts = [{"name": "data", "mountPath": "/data"}]
    mounts += [{"name": f"tmpfs-{path.strip('/').replace('/', '-')}", "mountPath": path}
               for path in EMPTY_DIRS]
    mounts.append({"name": "dev-shm", "mountPath": "/dev/shm"})
    container = {
        "name": NAME,
        "image": IMAGE,
        "args": ["ipa-server-install", "-U", f"--realm={project.realm}",
                 f"--domain={project.domain}", "--no-ntp"],
        "envFrom": [{"configMapRef": {"name": CONFIG_MAP}}],
        "ports": [{"name": p["name"], "containerPort": p["port"], "protocol": p["protocol"]}
                  for p in ports],
        "imagePullPolicy": "Always",  # a tag of upstream's is mutable (a digest is not)
        "startupProbe": {"exec": {"command": HEALTH}, "periodSeconds": 10,
                         "timeoutSeconds": 10, "failureThreshold": INSTALL_SECONDS // 10},
        "readinessProbe": {"exec": {"command": HEALTH},
                           "periodSeconds": 10, "timeoutSeconds": 10, "failureThreshold": 3},
        "livenessProbe": {"exec": {"command": HEALTH},
                          "periodSeconds": 30, "timeoutSeconds": 10, "failureThreshold": 4},
        "resources": {"requests": {"cpu": "500m", "memory": "2Gi"},
                      "limits": {"cpu": "2", "memory": "4Gi"}},
        # systemd as UID 0 of the pod's own user namespace (hostUsers: false): its
        # capabilities are namespaced; never host root. Privilege escalation stays off.
        "securityContext": {**root_in_userns, "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"], "add": list(CAPABILITIES)}},
        "volumeMounts": mounts,
    }
    init = {
        "name": "install-options",
        "image": IMAGE,
        "imagePullPolicy": "Always",
        "command": ["/bin/sh", "-c", _options_script()],
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"},
                      "limits": {"cpu": "100m", "memory": "64Mi"}},
        "securityContext": {**root_in_userns, "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "data", "mountPath": "/data"}, *secret_mounts],
    }
    statefulset = {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": NAME, "labels": labels(NAME)},
        "spec": {
            "replicas": 1,
            "serviceName": NAME,
            "selector": {"matchLabels": selector(NAME)},
            "template": {
                "metadata": {"labels": labels(NAME), "annotations": {ANNOTATION_SERVICE: NAME}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "setHostnameAsFQDN": True,
                    "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                    "initContainers": [init],
                    "containers": [container],
                    "volumes": volumes,
                },
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data", "labels": labels(NAME)},
                "spec": {"accessModes": ["ReadWriteOnce"],
                         "resources": {"requests": {"storage": STORAGE}}},
            }],
        },
    }
    service = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": NAME, "labels": labels(NAME)},
        "spec": {"selector": selector(NAME),
                 "ports": [{**p, "targetPort": p["port"]} for p in ports]},
    }
    return [statefulset, service]


def monolith_network_policies(services: list[Service]) -> list[dict[str, Any]]:
    """Default deny, then the monolith's standard ports open to its users (as the split's
    kdc and http are) and egress to DNS and itself only: its daemons talk over loopback."""
    ports = [{"port": p["port"], "protocol": p["protocol"]} for p in standard_ports(services)]
    return [default_deny(), {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": f"{NAME}-allow", "labels": labels(NAME)},
        "spec": {"podSelector": {"matchLabels": selector(NAME)},
                 "policyTypes": ["Ingress", "Egress"],
                 "ingress": [{"ports": ports}],
                 "egress": [DNS, {"to": [{"podSelector": {"matchLabels": selector(NAME)}}],
                                  "ports": ports}]},
    }]
