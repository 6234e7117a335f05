"""The spec model: ``ipabuild.yaml`` (``Project``) and ``services/<name>/service.yaml``
(``Service``) as strict pydantic models; ``spec.load`` reads the files into them.

The models are strict (unknown keys are errors) because a typo that silently does
nothing is the worst failure a declarative spec can have. Every validation error is
turned into one :class:`ConfigError` naming file, line and fix.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

PROJECT_FILE = "ipabuild.yaml"
SERVICE_FILE = "service.yaml"
COMMON_DIR = "common"
SERVICE_NAME = re.compile(r"^[a-z][a-z0-9-]*$")
NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


PRIVILEGED_PORTS = 1024  # the kernel's default net.ipv4.ip_unprivileged_port_start

# Kubernetes' safe sysctls (namespaced; Pod Security baseline and restricted allow them).
SAFE_SYSCTLS = frozenset({
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes",
})


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- ipabuild.yaml -------------------------------------------------------------------


class Bootstrap(StrictModel):
    """How to make a base image locally with mmdebstrap (no registry needed)."""

    suite: str
    mirror: str = "http://deb.debian.org/debian"
    extra_suites: list[str] = Field(default_factory=list)
    variant: str = "minbase"
    include: list[str] = Field(default_factory=list)
    exclude_paths: list[str] = Field(default_factory=list)


class Base(StrictModel):
    """A base image: bootstrapped locally, or taken from a registry (``from``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    bootstrap: Bootstrap | None = None
    from_image: str | None = Field(default=None, alias="from")

    @field_validator("from_image")
    @classmethod
    def _reference_has_name(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("`from` must name an image such as registry.example/fedora:43")
        return value

    @model_validator(mode="after")
    def _exactly_one_source(self) -> Base:
        if (self.bootstrap is None) == (self.from_image is None):
            raise ValueError("a base needs exactly one of `bootstrap` or `from`")
        return self


class Family(StrictModel):
    """A distribution family: its package manager and the bases services may use."""

    package_manager: Literal["apt", "dnf"]
    bases: dict[str, Base]
    common_packages: list[str] = Field(
        default_factory=list, description="installed in every image of this family"
    )


class PackageOverride(StrictModel):
    """Kolla-style change of a package list: replace it, or append/remove entries."""

    override: list[str] | None = None
    append: list[str] = Field(default_factory=list)
    remove: list[str] = Field(default_factory=list)


def namespace_problem(value: str) -> str | None:
    """Why ``value`` cannot be the overlays' namespace, or None."""
    if len(value) > 63 or not NAMESPACE.match(value):
        return "a namespace is a DNS label (a-z, 0-9, '-', at most 63)"
    if value == "default":
        return "name a namespace of the stack's own, not `default`"
    return None


class ImageSettings(StrictModel):
    prefix: str = "localhost/ipabuild"
    tag: str = "latest"


class Project(StrictModel):
    """Project-wide settings from ``ipabuild.yaml``."""

    realm: str
    domain: str
    image: ImageSettings = Field(default_factory=ImageSettings)
    namespace: str = Field(
        default="ipabuild",
        description="Kubernetes namespace of the overlays' objects (`ipabuild manifests "
                    "--namespace` overrides it); never `default`")
    server_name: str = Field(
        default="ipa", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        description="the one server name FreeIPA's clients know (host label; the server "
                    "is <server_name>.<domain>): LDAP, Kerberos and HTTP on their standard "
                    "ports, served by the service whose ports have routes")
    default_family: str = "debian"
    source: str = "https://github.com/ipabuild/ipabuild"
    families: dict[str, Family]
    overrides: dict[str, dict[str, PackageOverride]] = Field(default_factory=dict)

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        problem = namespace_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("realm")
    @classmethod
    def _realm_upper(cls, value: str) -> str:
        if value != value.upper():
            raise ValueError("a Kerberos realm is written in capitals, e.g. EXAMPLE.TEST")
        return value

    @property
    def server(self) -> str:
        """The server's FQDN (``ipa.example.test``): FreeIPA's master, in cn=masters."""
        return f"{self.server_name}.{self.domain}"

    @property
    def suffix(self) -> str:
        """The LDAP suffix derived from the domain (``dc=example,dc=test``)."""
        return ",".join(f"dc={part}" for part in self.domain.split("."))


# --- services/<name>/service.yaml ----------------------------------------------------


class StageCopy(StrictModel):
    """Files a spec takes from a build stage's image (``COPY --from``): how several
    images share one expensive build (FreeIPA's framework) without repeating it."""

    stage: str = Field(description="name of a spec with `mode: stage`")
    src: str = Field(description="absolute path in the stage's image")
    dest: str = Field(description="absolute path in this image")

    @field_validator("src", "dest")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("a path must be absolute")
        return value


class MonolithPart(StrictModel):
    """A split service a monolith runs unchanged: that service's own image tree under
    ``/srv/<service>``, started by the monolith's supervisor as upstream runs its daemons.
    So both modes run the same build of FreeIPA, written once."""

    service: str = Field(description="name of a split service")
    user: str = Field(description="user (name in that service's image) the supervisor "
                                  "starts the service as: upstream's user for its daemons")
    upstream: str = Field(description="how upstream's monolith runs these daemons, and "
                                      "where this differs (the posture report quotes it)")


class AbsentDaemon(StrictModel):
    """A daemon upstream's monolith runs that this monolith does not: the posture report
    lists it ("root upstream, absent here") so a comparison never hides it."""

    daemon: str
    upstream_user: str = Field(default="root", description="the user upstream runs it as")
    why: str = Field(description="why it is absent here, and what does its job instead")


class Wheel(StrictModel):
    """A pinned Python wheel, fetched on the host into the build context (pip inside a
    build container does not trust this kind of host's package proxy)."""

    name: str
    version: str
    sha256: str = Field(description="sha256 of the wheel file; a mismatch stops the build")
    dest: str = Field(default="/usr/share/ipabuild/wheels",
                      description="directory in the image the wheel file is copied to")

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{64}", value):
            raise ValueError("sha256 is 64 lowercase hex digits (pip hash -a sha256 FILE)")
        return value


class FamilyPackages(StrictModel):
    """What a service needs from one family: its base and its packages."""

    base: str
    packages: list[str] = Field(default_factory=list)
    build_steps: list[str] = Field(default_factory=list)
    prune: list[str] = Field(
        default_factory=list,
        description="paths deleted in the same layer that installs them (e.g. test keys)",
    )
    copy_from: list[StageCopy] = Field(
        default_factory=list,
        description="artifacts taken from build stages, after the packages are installed",
    )
    wheels: list[Wheel] = Field(default_factory=list)

    @property
    def stages(self) -> list[str]:
        """The build stages this family's image copies from, in first-use order."""
        return list(dict.fromkeys(copy.stage for copy in self.copy_from))


class FileEntry(StrictModel):
    """A file copied into the image; ``.j2`` sources are rendered with Jinja2."""

    src: str
    dest: str
    mode: str = "0644"

    @field_validator("src")
    @classmethod
    def _inside_the_project(cls, value: str) -> str:
        # A path that leaves services/ would copy any host file into the build context.
        if value.startswith("/") or ".." in Path(value).parts or not value.strip():
            raise ValueError("src is a relative path inside services/<name>/ or "
                             "services/common/ (no leading / and no ..)")
        return value

    @field_validator("dest")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("dest must be an absolute path in the image")
        return value

    @field_validator("mode")
    @classmethod
    def _octal(cls, value: str) -> str:
        if not re.fullmatch(r"0?[0-7]{3}", value):
            raise ValueError("mode is an octal string such as '0755'")
        if int(value, 8) & 0o6000:
            raise ValueError("setuid/setgid modes are not allowed by the image contract")
        return value.zfill(4)


class PortRoute(StrictModel):
    """Where a port of the server name leads: a named port of another service."""

    service: str = Field(description="the service that serves this port")
    port: str = Field(description="the name of that service's port")
    public: bool = Field(
        default=True,
        description="reachable from anywhere in a cluster (a NetworkPolicy rule), as "
                    "FreeIPA's clients need LDAP, Kerberos and HTTP; false: only from the "
                    "target's own clients (its policy as before)")


class Port(StrictModel):
    name: str = Field(description="a Kubernetes port name (15 characters at most); a "
                                  "Service's named targetPort selects the pods that have it")
    port: int = Field(ge=1, le=65535,
                      description="port inside the container: unprivileged (>= 1024), or "
                                  "lower only with the sysctl net.ipv4.ip_unprivileged_port_start")
    service_port: int = Field(ge=1, le=65535, description="standard port a Service exposes")
    protocol: Literal["tcp", "udp"] = "tcp"
    route: PortRoute | None = Field(
        default=None,
        description="the server name's ports only: forwarded to this service's named port "
                    "(locally by the server's proxy container; in a cluster the server's "
                    "Service selects the pods that declare that port name)")


def _absolute_volume_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError("a volume path must be absolute")
    return value


class Volume(StrictModel):
    name: str
    path: str
    ephemeral: bool = Field(
        default=False,
        description="holds no state (e.g. a socket another container of the pod shares): "
                    "an emptyDir in Kubernetes, not a PersistentVolumeClaim")

    _absolute = field_validator("path")(_absolute_volume_path)


class SharedVolume(StrictModel):
    """Another service's volume mounted here too (e.g. ldap's LDAPI socket for the kdc).

    Sharing a socket's peer credentials needs one user namespace: in Kubernetes this
    service then runs as a second container of that service's pod."""

    service: str
    volume: str
    path: str

    _absolute = field_validator("path")(_absolute_volume_path)


class Healthcheck(StrictModel):
    command: list[str]
    interval: int = 10
    timeout: int = 5
    retries: int = 3
    start_period: int = 60
    settles: bool = Field(
        default=False,
        description="the check can say `settling:` (healthy, about to restart a part "
                    "of itself that a later service set off: the kdc once the CA "
                    "publishes its PKINIT certificate); `ipabuild up` runs it once more "
                    "at the end and waits until it stops")


class HeldCertificate(StrictModel):
    """A certificate a service holds, listed by ``ipabuild certs``: where it is read
    from in the running container (a PEM file, or an NSS database and nickname) and who
    renews it."""

    name: str = Field(description="short identifier; a renewer's state file records the "
                                  "certificate under the same name")
    role: str = Field(description="what the certificate is for, in a few words")
    pem: str | None = Field(default=None, description="absolute path of a PEM file")
    nssdb: str | None = Field(default=None, description="NSS database directory")
    nickname: str | None = Field(default=None, description="nickname in `nssdb`")
    renewed_by: str = Field(description="who renews it, or the manual command that does")

    @model_validator(mode="after")
    def _one_place(self) -> HeldCertificate:
        if bool(self.pem) == bool(self.nssdb and self.nickname) or (
                self.pem and (self.nssdb or self.nickname)):
            raise ValueError("give either `pem`, or `nssdb` and `nickname`")
        for path in (self.pem, self.nssdb):
            if path and not path.startswith("/"):
                raise ValueError(f"{path!r} must be an absolute path in the container")
        return self


class Renewer(StrictModel):
    """A service that renews the stack's certificates: where it records what it did, and
    how to make it renew named certificates now (`ipabuild certs --renew`)."""

    state: str = Field(description="its state file (JSON, services/ca/renewal.py): "
                                   "renewals and failures show in `ipabuild certs`")
    renew_now: list[str] = Field(description="command renewing the certificates whose "
                                             "names are appended, whatever their dates")


class Secret(StrictModel):
    """A secret delivered at run time as a mounted file (never env, never a layer)."""

    name: str
    path: str


class InitStep(StrictModel):
    """A one-time initialisation run before the service's first start (an init container)."""

    command: list[str]
    root_in_user_namespace: bool = Field(
        default=False,
        description="needs euid 0, granted only inside a user namespace (never host root)",
    )
    reason: str = ""


_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
_FACTORS = {None: 1.0, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
            "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40}


def quantity(value: str) -> float:
    """A Kubernetes quantity (``100m``, ``0.5``, ``256Mi``, ``1G``) as a number."""
    match = _QUANTITY.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 100m, 1, 256Mi, 1Gi)")
    return float(match.group(1)) * _FACTORS[match.group(2)]


class Resources(StrictModel):
    """Requests and limits of the service's container in Kubernetes. The defaults fit no
    service in particular: each spec sets figures from its measured RSS
    (docs/performance.md)."""

    cpu_request: str = "100m"
    cpu_limit: str = "1"
    memory_request: str = "256Mi"
    memory_limit: str | None = Field(
        default="1Gi", description="null: no memory limit, which needs "
        "`no_memory_limit_because` (the posture report and the scanner's exception quote it)")
    no_memory_limit_because: str = ""

    @model_validator(mode="after")
    def _request_within_limit(self) -> Resources:
        for what in ("cpu", "memory"):
            request = getattr(self, f"{what}_request")
            limit = getattr(self, f"{what}_limit")
            if limit is not None and quantity(request) > quantity(limit):
                raise ValueError(f"{what}_request {request} is above {what}_limit {limit}")
        if self.memory_limit is None and not self.no_memory_limit_because.strip():
            raise ValueError("memory_limit: null needs no_memory_limit_because: why")
        if self.memory_limit is not None and self.no_memory_limit_because:
            raise ValueError("no_memory_limit_because is only for memory_limit: null")
        return self


def _list_or_conditions(schema: dict[str, Any]) -> None:
    """depends_on's JSON Schema names both forms it accepts (see ``_dependency_list``)."""
    conditions = schema.pop("additionalProperties")
    schema.pop("type")
    schema["anyOf"] = [{"type": "array", "items": {"type": "string"}},
                       {"type": "object", "additionalProperties": conditions}]


class Service(StrictModel):
    """One service's declaration. Services are data: no Python knows their names."""

    name: str = ""
    description: str
    mode: Literal["split", "monolithic", "stage", "client"] = Field(
        default="split",
        description="split: one unprivileged service; monolithic: several daemons started "
                    "as root by a supervisor, only ever run in a user namespace; stage: a "
                    "build stage, never run, whose artifacts other specs copy (copy_from); "
                    "client: a toolbox a user runs against a stack (`ipabuild client`), "
                    "built with the split images and never deployed",
    )
    user: int = Field(ge=0, description="numeric USER of the image; 0 only for monolithic")
    runs: list[MonolithPart] = Field(
        default_factory=list,
        description="monolithic only: the split services this image runs, each from its "
                    "own image's tree (copied whole) under one supervisor")
    upstream_absent: list[AbsentDaemon] = Field(
        default_factory=list,
        description="monolithic only: upstream's daemons this monolith leaves out, why")
    aliases: list[str] = Field(
        default_factory=list, description="extra network names (a monolith answers for all)")
    families: dict[str, FamilyPackages]
    files: list[FileEntry] = Field(default_factory=list)
    build_steps: list[str] = Field(default_factory=list)
    ports: list[Port] = Field(default_factory=list)
    volumes: list[Volume] = Field(default_factory=list)
    shared_volumes: list[SharedVolume] = Field(default_factory=list)
    pod: str | None = Field(
        default=None,
        description="in Kubernetes, run as a further container of this service's pod (one "
                    "user namespace: needed to share a socket's peer credentials)")
    writable: list[str] = Field(default_factory=list)
    tmpfs: list[str] = Field(default_factory=list)
    sysctls: dict[str, str] = Field(
        default_factory=dict,
        description="namespaced sysctls of the service's own network namespace; only "
                    "Kubernetes' safe set (allowed by Pod Security 'restricted'), e.g. "
                    "net.ipv4.ip_unprivileged_port_start to listen on 80/443 unprivileged")
    environment: dict[str, str] = Field(default_factory=dict)
    secrets: list[Secret] = Field(default_factory=list)
    entrypoint: list[str] = Field(default_factory=list)
    command: list[str] = Field(default_factory=list)
    healthcheck: Healthcheck | None = None
    init: InitStep | None = None
    depends_on: dict[str, Literal["healthy", "started"]] = Field(
        default_factory=dict,
        description="what `ipabuild up` starts first: a list of services (each must be "
                    "healthy first), or a mapping service -> healthy | started (started: "
                    "its container runs, e.g. when the entrypoint waits for it itself); "
                    "services whose dependencies are met start in parallel",
        json_schema_extra=_list_or_conditions,
    )
    exceptions: list[str] = Field(
        default_factory=list,
        description="explicit deviations from the image contract, with the reason",
    )
    certificates: list[HeldCertificate] = Field(
        default_factory=list, description="certificates this service holds (`ipabuild certs`)")
    renewer: Renewer | None = Field(
        default=None, description="the certificate renewer this service runs, if any")
    read_only_root: bool = True
    resources: Resources = Field(
        default_factory=Resources,
        description="Kubernetes requests and limits of the container (and its init step): "
                    "cpu_request, cpu_limit, memory_request, memory_limit as quantities; "
                    "set from the service's measured idle and loaded RSS")

    @field_validator("sysctls")
    @classmethod
    def _safe_sysctls_only(cls, value: dict[str, str]) -> dict[str, str]:
        unsafe = sorted(set(value) - SAFE_SYSCTLS)
        if unsafe:
            raise ValueError(f"{', '.join(unsafe)} is not in Kubernetes' safe sysctl set "
                             f"(Pod Security 'restricted' refuses it); allowed: "
                             + ", ".join(sorted(SAFE_SYSCTLS)))
        return value

    @field_validator("depends_on", mode="before")
    @classmethod
    def _dependency_list(cls, value: Any) -> Any:
        """The list form: each named service must be healthy first."""
        if isinstance(value, list):
            if not all(isinstance(name, str) for name in value):
                raise ValueError("depends_on lists service names")
            return dict.fromkeys(value, "healthy")
        return value

    @field_validator("user")
    @classmethod
    def _root_only_for_monolith(cls, value: int, info: ValidationInfo) -> int:
        if value == 0 and info.data.get("mode") == "split":
            raise ValueError("must be greater than 0: a split image never runs as root")
        return value

    @model_validator(mode="after")
    def _runnable_has_entrypoint(self) -> Service:
        if self.mode != "stage" and not self.entrypoint:
            raise ValueError("`entrypoint` is required (only a `mode: stage` spec has none)")
        if self.mode == "stage" and (self.ports or self.volumes or self.secrets):
            raise ValueError("a build stage is never run: it has no ports, volumes or secrets")
        if (self.runs or self.upstream_absent) and self.mode != "monolithic":
            raise ValueError("only a `mode: monolithic` spec has `runs` and "
                             "`upstream_absent`")
        start = int(self.sysctls.get("net.ipv4.ip_unprivileged_port_start", PRIVILEGED_PORTS))
        low = sorted(p.port for p in self.ports if p.port < start)
        if low:
            raise ValueError(
                f"port {low[0]} is privileged and the image never has a capability: use a "
                f"port >= {start}, or set sysctls: {{net.ipv4.ip_unprivileged_port_start: "
                f"\"{low[0]}\"}} (namespaced, allowed by Pod Security 'restricted')")
        if self.mode == "client" and (self.ports or self.volumes or self.secrets):
            raise ValueError("a client is never deployed: it has no ports, volumes or secrets")
        routed = [p.name for p in self.ports if p.route]
        if routed and (self.mode != "split" or len(routed) != len(self.ports)):
            raise ValueError("routes belong to the server name's service: a split service "
                             "whose every port has a route")
        return self

    @property
    def serves_name(self) -> bool:
        """Whether this service stands for the server name (its ports have routes):
        locally a proxy container, in a cluster the Service of that name."""
        return any(p.route for p in self.ports)


class CommonFiles(StrictModel):
    """``services/common/files.yaml``: files every image carries (e.g. the passwd shim)."""

    files: list[FileEntry] = Field(default_factory=list)
