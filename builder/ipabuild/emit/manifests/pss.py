"""Static check of workloads against Pod Security Standards "restricted" and the image
contract (no fixed UID, read-only root, secrets never in env).

``violations(obj, root_init)`` lists every broken rule of one object. ``root_init`` names
the containers allowed the single documented exception: an init step running as UID 0
with namespaced capabilities (``ROOT_INIT_CAPABILITIES``), acceptable only with
``hostUsers: false``; every other rule still applies to them.
"""

from __future__ import annotations

from typing import Any

from ipabuild.emit.manifests.common import ROOT_INIT_CAPABILITIES
from ipabuild.spec.model import SAFE_SYSCTLS

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "Pod"}
ALLOWED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "image",
                   "persistentVolumeClaim", "projected", "secret"}
SECCOMP_OK = {"RuntimeDefault", "Localhost"}


def pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    if obj.get("kind") not in WORKLOAD_KINDS:
        return None
    if obj["kind"] == "Pod":
        return obj.get("spec", {})
    spec = obj.get("spec", {})
    if obj["kind"] == "Job":
        return spec.get("template", {}).get("spec", {})
    return spec.get("template", {}).get("spec", {})


def violations(obj: dict[str, Any], root_init: frozenset[str] = frozenset()) -> list[str]:
    """Every rule ``obj`` breaks (empty for a compliant object or a non-workload)."""
    spec = pod_spec(obj)
    if spec is None:
        return []
    where = f"{obj['kind']}/{obj.get('metadata', {}).get('name', '?')}"
    found: list[str] = []
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            found.append(f"{where}: {field} is set")
    pod_sc = spec.get("securityContext", {}) or {}
    for sysctl in pod_sc.get("sysctls", []) or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            found.append(f"{where}: unsafe sysctl {sysctl.get('name')}")
    for volume in spec.get("volumes", []) or []:
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            found.append(f"{where}: volume {volume.get('name')} uses {sorted(kinds)}")
    if pod_sc.get("runAsUser") is not None:
        found.append(f"{where}: the pod pins runAsUser (OpenShift assigns the UID)")
    containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    for container in containers:
        exempt = container.get("name") in root_init
        found += [f"{where} container {container.get('name')}: {problem}"
                  for problem in _container_problems(container, pod_sc, exempt)]
    return found


def _container_problems(container: dict[str, Any], pod_sc: dict[str, Any],
                        exempt: bool) -> list[str]:
    sc = container.get("securityContext", {}) or {}
    problems = []
    if sc.get("privileged"):
        problems.append("privileged")
    if sc.get("allowPrivilegeEscalation") is not False:
        problems.append("allowPrivilegeEscalation is not false")
    caps = sc.get("capabilities", {}) or {}
    if "ALL" not in (caps.get("drop") or []):
        problems.append("capabilities.drop lacks ALL")
    allowed_add = {"NET_BIND_SERVICE", *(ROOT_INIT_CAPABILITIES if exempt else [])}
    extra = sorted(set(caps.get("add") or []) - allowed_add)
    if extra:
        problems.append(f"adds capabilities {extra}")
    seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
    if seccomp not in SECCOMP_OK:
        problems.append(f"seccompProfile is {seccomp or 'unset'}")
    if sc.get("readOnlyRootFilesystem") is not True:
        problems.append("readOnlyRootFilesystem is not true")
    for port in container.get("ports") or []:
        if port.get("hostPort"):
            problems.append(f"hostPort {port['hostPort']}")
    for env in container.get("env") or []:
        if (env.get("valueFrom") or {}).get("secretKeyRef"):
            problems.append(f"secret in environment variable {env.get('name')}")
    for source in container.get("envFrom") or []:
        if "secretRef" in source:
            problems.append("secret in environment (envFrom)")
    if exempt:
        return problems
    non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
    if non_root is not True:
        problems.append("runAsNonRoot is not true")
    if sc.get("runAsUser") is not None:
        problems.append(f"runAsUser pinned to {sc['runAsUser']} (OpenShift assigns the UID)")
    return problems
