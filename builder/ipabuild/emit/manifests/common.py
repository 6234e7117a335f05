"""Names, labels and spec checks shared by every manifest builder.

Everything service-specific comes from the specs; this module only knows Kubernetes'
rules (name lengths, port names) and the project's label scheme.
"""

from __future__ import annotations

import re
from typing import Any

from ipabuild.core.errors import ConfigError
from ipabuild.spec.model import Service

PART_OF = "freeipa"
MANAGER = "ipabuild"
CONFIG_MAP = "ipa-config"
SECRET = "ipabuild-secrets"
SECRET_MODE = 0o440  # owner root, group 0 (or OpenShift's fsGroup): the runtime GID reads it
STORAGE = "1Gi"
ANNOTATION_ROOT_INIT = "ipabuild.io/root-in-user-namespace"
ANNOTATION_SERVICE = "ipabuild.io/service"
ANNOTATION_SCC = "openshift.io/required-scc"
# On the pods that serve a port of the server name: what its Service selects (each port
# then reaches only the pods that declare its named targetPort).
SERVER_LABEL = "ipabuild.io/serves-server-name"
# Namespaced capabilities a root init step keeps inside its own user namespace (chown and
# friends on its volumes): worthless against the host, and only with hostUsers: false.
ROOT_INIT_CAPABILITIES = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "SETGID", "SETUID"]

_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def spec_path(service: Service) -> str:
    return f"services/{service.name}/service.yaml"


def fail(service: Service, problem: str, fix: str) -> ConfigError:
    """A ConfigError naming the service (its spec file) for a spec manifests cannot express."""
    return ConfigError(spec_path(service), f"service {service.name!r}: {problem}", None, fix)


def labels(service_name: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": service_name,
        "app.kubernetes.io/component": service_name,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGER,
    }


def selector(service_name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": service_name, "app.kubernetes.io/part-of": PART_OF}


def slug(path: str) -> str:
    """A DNS label for a path: /run/lock -> run-lock."""
    text = re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-")
    return text or "root"


def tmpfs_volume(path: str) -> str:
    return f"tmpfs-{slug(path)}"[:63].rstrip("-")


def needs_root_init(service: Service) -> bool:
    return service.init is not None and service.init.root_in_user_namespace


def image_name(service_name: str) -> str:
    """The placeholder image a workload names; overlays' `images:` rewrite it."""
    return f"ipabuild/{service_name}"


def check_service(service: Service, known: set[str]) -> None:
    """Refuse specs that Kubernetes cannot express, naming the service and the fix."""
    if len(service.name) > 63 or not _DNS_LABEL.match(service.name):
        raise fail(service, "the name is not a DNS label (a-z, 0-9, '-', at most 63)",
                   "rename the services/ directory")
    names: dict[str, str] = {}
    inside: dict[tuple[int, str], str] = {}
    outside: dict[tuple[int, str], str] = {}
    for port in service.ports:
        if len(port.name) > 15 or not _PORT_NAME.match(port.name) or "--" in port.name \
                or not re.search("[a-z]", port.name):
            raise fail(service, f"port name {port.name!r} is not a Kubernetes port name "
                       "(at most 15 of a-z, 0-9, '-', with a letter)", "rename the port")
        for table, key, what in ((names, port.name, "name"),
                                 (inside, (port.port, port.protocol), "container port"),
                                 (outside, (port.service_port, port.protocol), "service port")):
            if key in table:  # type: ignore[operator]
                shown = key if isinstance(key, str) else f"{key[0]}/{key[1]}"
                raise fail(service, f"port clash: {what} {shown} is used by both "
                           f"{table[key]!r} and {port.name!r}",  # type: ignore[index]
                           "give each port its own name, port and service_port per protocol")
            table[key] = port.name  # type: ignore[index]
    mounts: dict[str, str] = {}
    volume_names: set[str] = set()
    for volume in service.volumes:
        if not volume.path.strip("/"):
            raise fail(service, f"volume {volume.name!r} has no usable path", "set `path`")
        if volume.name in volume_names or not _DNS_LABEL.match(volume.name):
            raise fail(service, f"volume name {volume.name!r} is repeated or not a DNS label",
                       "give each volume a unique lower-case name")
        volume_names.add(volume.name)
        _claim(service, mounts, volume.path, f"volume {volume.name!r}")
    for path in service.tmpfs:
        _claim(service, mounts, path, "tmpfs")
    for secret in service.secrets:
        if not secret.path.startswith("/"):
            raise fail(service, f"secret {secret.name!r} path {secret.path!r} is not absolute",
                       "use an absolute path such as /run/secrets/NAME")
        _claim(service, mounts, secret.path, f"secret {secret.name!r}")
    for dependency in service.depends_on:
        if dependency not in known:
            raise fail(service, f"depends on unknown service {dependency!r}",
                       "name a directory under services/")
    if service.init is not None and not service.init.command:
        raise fail(service, "init has an empty command", "give `init.command` an argv")


def _claim(service: Service, mounts: dict[str, str], path: str, what: str) -> None:
    path = path.rstrip("/") or "/"
    if path in mounts:
        raise fail(service, f"{what} and {mounts[path]} both mount {path}",
                   "use distinct paths")
    mounts[path] = what


def dump_header() -> str:
    return ("# Generated by `ipabuild manifests` from ipabuild.yaml and services/*/service.yaml."
            "\n# Do not edit: change the specs and run `ipabuild manifests`.\n")


def meta(name: str, service_name: str | None = None, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"name": name}
    if service_name:
        data["labels"] = labels(service_name)
    data.update(extra)
    return data


def server_targets(services: list[Service]) -> dict[str, list[str]]:
    """Each pod (its service's name, or its host's) serving a port of the server name ->
    the names of its ports that are routed there publicly (reachable from anywhere)."""
    by_name = {s.name: s for s in services}
    found: dict[str, list[str]] = {}
    for server in (s for s in services if s.serves_name):
        for port in server.ports:
            if port.route is None or port.route.service not in by_name:
                continue
            target = by_name[port.route.service]
            public = found.setdefault(target.pod or target.name, [])
            if port.route.public:
                public.append(port.route.port)
    return found
