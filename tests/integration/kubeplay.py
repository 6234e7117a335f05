"""Play a kustomize overlay of ours with `podman kube play` (4.3.1), one workload per pod.

The manifests are played as kustomize builds them; this harness translates only what
podman 4.3.1's kube play cannot do (see ../shared/HOST.md and docs/manifests.md):

- StatefulSet is not played, and a Deployment's init containers meet a 4.3.1 race:
  each workload is played as its pod template (one replica) in a Pod, each
  volumeClaimTemplate as a PVC (a podman named volume) with a throwaway name;
- Secret volumes are broken (subPath items become directories, files stay base64), and
  so is subPath on hostPath: the Secret object is dropped and each mounted item becomes
  a file hostPath holding the decoded value, mounted at the same path, read-only, as
  kubelet would project it (mode 0444: the owner is unmapped inside the user namespace);
- Services are ignored by kube play: each pod joins one podman network at a fixed
  address (a ClusterIP's part) with its Service name and that name under the domain as
  network aliases and as hostAliases in every pod (aardvark-dns in 4.3 stops answering
  while pods come and go; cluster DNS does not); pods reach each other on container
  ports, which the Services also publish (docs/manifests.md);
- annotation values over 63 characters (reviewers' notes) are dropped: 4.3.1 applies
  the label length rule to annotations;
- containerPorts are dropped: 4.3.1 publishes each on the host (kubelet does not), so
  ca and http, both on 8443, would clash; pods reach each other on the network anyway;
- resolver options `timeout:1 attempts:5` (dnsConfig): aardvark-dns drops lookups while
  a container joins the network, and glibc's default waits 5 s per try;
- emptyDirs get names of their pod's own (4.3.1 makes each a named volume called after
  the pod's volume name, shared by every pod using that name);
- `--userns=auto:size=65536` for a pod with hostUsers: false only: podman's default auto
  size (1024) maps no UID as high as the images' USER; 65536 is what a kubelet gives such
  a pod (with it, 4.3.1 maps even a hostUsers pod into an auto range);
- the plain split overlay's pods get the runAsUser an OpenShift admission would write
  (a random UID per pod, from the namespace's range), which the manifests leave unset;
- init containers are played with podman's "always" type (podman#18477);
- a pod's `securityContext.sysctls` (http's net.ipv4.ip_unprivileged_port_start) are
  ignored by 4.3.1's kube play: the pod is played with a containers.conf (this host's
  settings plus `default_sysctls` = exactly the pod's sysctls) given as CONTAINERS_CONF.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
import tomllib
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ipabuild.core.resolver import DNS_OPTIONS, service_addresses
from ipabuild.emit import kustomize
from ipabuild.emit.tree import ManifestOptions, render_manifests
from ipabuild.spec.load import load_project, load_services

ROOT = Path(__file__).resolve().parents[2]
WORKLOADS = ("StatefulSet", "Deployment")


def containers_conf_with_sysctls(sysctls: list[str],
                                 etc: Path = Path("/etc/containers")) -> str:
    """This host's containers.conf (main file and drop-ins, merged by section) plus
    ``default_sysctls``: CONTAINERS_CONF replaces every file podman 4.3 would read."""
    merged: dict[str, dict[str, Any]] = {}
    for path in [etc / "containers.conf", *sorted((etc / "containers.conf.d").glob("*.conf"))]:
        if path.is_file():
            for section, values in tomllib.loads(path.read_text()).items():
                merged.setdefault(section, {}).update(values)
    merged.setdefault("containers", {})["default_sysctls"] = sysctls
    lines = []
    for section, values in merged.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def podman(*args: str, check: bool = True, timeout: float = 300
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=check,
                          timeout=timeout)


def build_overlay(workdir: Path, overlay: str) -> tuple[list[dict[str, Any]], Path]:
    """Write our kustomize tree with throwaway secret values; build ``overlay`` with the
    real kustomize. Returns the objects and the directory holding the secret values."""
    project = load_project(ROOT)
    files = render_manifests(project, load_services(ROOT, project, []),
                             ManifestOptions(project.image.prefix, project.image.tag))
    tree = workdir / "kustomize"
    for relative, text in files.items():
        (tree / relative).parent.mkdir(parents=True, exist_ok=True)
        (tree / relative).write_text(text)
    generator = yaml.safe_load((tree / "secrets/kustomization.yaml").read_text())
    for name in generator["secretGenerator"][0]["files"]:
        (tree / "secrets" / name).write_text(f"play-{uuid.uuid4().hex}")
    return kustomize.build(tree / "overlays" / overlay), tree / "secrets"


def workload_names(objects: list[dict[str, Any]]) -> list[str]:
    return [o["metadata"]["name"] for o in objects if o["kind"] in WORKLOADS]


def _project_secrets(pod: dict[str, Any], secrets: dict[str, dict[str, Any]],
                     secret_dir: Path) -> None:
    """Replace each Secret volume by one read-only file hostPath per mounted item."""
    for volume in list(pod.get("volumes", [])):
        if "secret" not in volume:
            continue
        source = secrets[volume["secret"]["secretName"]]
        pod["volumes"].remove(volume)
        for item in volume["secret"]["items"]:
            path = secret_dir / item["path"]
            path.write_bytes(base64.b64decode(source["data"][item["key"]]))
            path.chmod(0o444)
            pod["volumes"].append({"name": f"secret-{item['path']}",
                                   "hostPath": {"path": str(path), "type": "File"}})
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            for mount in container.get("volumeMounts", []):
                if mount["name"] == volume["name"]:
                    mount["name"] = f"secret-{mount.pop('subPath')}"


def _own_empty_dirs(pod: dict[str, Any], owner: str) -> None:
    """Give each emptyDir a name of this pod's own: 4.3.1 plays an emptyDir as a podman
    named volume called after the pod's volume name, which every pod (and every stack)
    with a volume of that name would then share."""
    for volume in pod.get("volumes", []):
        if "emptyDir" not in volume:
            continue
        old, volume["name"] = volume["name"], f"{owner}-{volume['name']}"
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            for mount in container.get("volumeMounts", []):
                if mount["name"] == old:
                    mount["name"] = volume["name"]


def playable(objects: list[dict[str, Any]], wanted: str, prefix: str,
             secret_dir: Path, run_as_user: int | None = None) -> list[dict[str, Any]]:
    """The documents kube play gets for workload ``wanted``: its ConfigMaps, PVCs and the
    workload's pod template as a Pod named ``<prefix>-<wanted>``; ``run_as_user`` is
    the UID OpenShift's restricted SCC would write into the pod (from the namespace's
    range), which the manifests leave unset."""
    secrets = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Secret"}
    played = [o for o in objects if o["kind"] == "ConfigMap"]
    for obj in objects:
        if obj["kind"] not in WORKLOADS or obj["metadata"]["name"] != wanted:
            continue
        spec = obj["spec"]
        pod = spec["template"]["spec"]
        for template in spec.pop("volumeClaimTemplates", []):
            claim = f"{prefix}-{wanted}-{template['metadata']['name']}"
            played.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                           "metadata": {"name": claim}, "spec": template["spec"]})
            pod.setdefault("volumes", []).append(
                {"name": template["metadata"]["name"],
                 "persistentVolumeClaim": {"claimName": claim}})
        if run_as_user is not None:
            pod.setdefault("securityContext", {})["runAsUser"] = run_as_user
        _project_secrets(pod, secrets, secret_dir)
        _own_empty_dirs(pod, f"{prefix}-{wanted}")
        # aardvark-dns drops queries while a container joins the network (see
        # ipabuild/core/resolver.py): short resolver timeouts, as `ipabuild up` sets them.
        pod["dnsConfig"] = {"options": [{"name": name, "value": value} for name, value in
                                        (o.split(":") for o in DNS_OPTIONS)]}
        for container in pod["containers"]:
            # 4.3.1 publishes a containerPort on the host's same port (kubelet never
            # does): two pods with 8443 would clash. Pods reach each other directly.
            container.pop("ports", None)
        metadata = {**spec["template"]["metadata"], "name": f"{prefix}-{wanted}"}
        # 4.3.1 rejects annotation values over 63 characters (a label rule; Kubernetes
        # limits only their total size): ours are notes for reviewers, not behaviour.
        metadata["annotations"] = {key: value for key, value in
                                   metadata.get("annotations", {}).items() if len(value) <= 63}
        if pod.get("initContainers"):
            # 4.3.1 removes a finished "once" init container while it may still be
            # running (podman#18477, fixed in 4.6); "always" keeps it and still runs it
            # to completion before the main container, at every pod start, as kubelet.
            # (4.3.1 reads this annotation from a Pod only, hence Pod, not Deployment.)
            metadata.setdefault("annotations", {})[
                "io.podman.annotations.init.container.type"] = "always"
        played.append({"apiVersion": "v1", "kind": "Pod", "metadata": metadata,
                       "spec": pod})
    return played


@dataclass
class PlayedPod:
    """One workload played as a pod: its main container and readiness probe command."""

    service: str
    manifest: Path
    pod: str
    container: str
    probe: list[str]
    pod_spec: dict[str, Any]

    def pid(self) -> int:
        return int(podman("inspect", "-f", "{{.State.Pid}}", self.container).stdout)

    def logs(self) -> str:
        result = podman("logs", "--tail", "40", self.container, check=False)
        return result.stdout[-3000:] + result.stderr[-3000:]


@dataclass
class Play:
    """Pods played from one overlay on one podman network; ``down`` removes everything."""

    name: str
    workdir: Path
    domain: str
    secret_values: Path  # one file per secret, as `ipabuild secrets` writes them
    pods: dict[str, PlayedPod] = field(default_factory=dict)
    addresses: dict[str, str] = field(default_factory=dict)  # service -> its pod's address
    overlay: str = "split-userns"
    # Per workload, the UID an OpenShift admission would assign (none: the image's USER).
    run_as_users: dict[str, int] = field(default_factory=dict)

    @property
    def network(self) -> str:
        return f"ipabuild-{self.name}"

    def start_network(self, services: list[str]) -> None:
        """Create the network and give each service's pod a fixed address: what a
        Service's ClusterIP is on a cluster (kube play ignores Services)."""
        podman("network", "create", self.network)
        subnet = podman("network", "inspect", "--format",
                        "{{range .Subnets}}{{.Subnet}}{{end}}", self.network).stdout.strip()
        self.addresses = service_addresses(subnet, services)

    def host_entries(self) -> list[str]:
        """``name:address`` per Service name and ``<name>.<domain>`` (for clients)."""
        return [f"{name}:{address}" for service, address in self.addresses.items()
                for name in (service, f"{service}.{self.domain}")]

    def play(self, objects: list[dict[str, Any]], service: str, secret_dir: Path,
             guests: tuple[str, ...] = ()) -> list[PlayedPod]:
        """Play ``service``'s workload; ``guests`` are the services that run as further
        containers of its pod (their Service names point at this pod's address)."""
        documents = playable(objects, service, self.name, secret_dir,
                             self.run_as_users.get(service))
        manifest = self.workdir / f"play-{service}.yaml"
        pod_spec = next(d for d in documents if d["kind"] == "Pod")["spec"]
        # Cluster DNS answers reliably for Services; aardvark-dns in 4.3 stops answering
        # for seconds while pods come and go (httpd: "DNS lookup failure for: ca").
        pod_spec["hostAliases"] = [{"ip": address, "hostnames": [name, f"{name}.{self.domain}"]}
                                   for name, address in self.addresses.items()]
        manifest.write_text(yaml.safe_dump_all(documents))
        pod_name = f"{self.name}-{service}"
        played = [PlayedPod(name, manifest, pod_name, f"{pod_name}-{container['name']}",
                            container["readinessProbe"]["exec"]["command"], pod_spec)
                  for name, container in zip((service, *guests), pod_spec["containers"],
                                             strict=True)]
        for pod in played:
            self.pods[pod.service] = pod
        aliases = ",".join(f"alias={name},alias={name}.{self.domain}"
                           for name in (service, *guests))
        network = f"{self.network}:ip={self.addresses[service]},{aliases}"
        sysctls = (pod_spec.get("securityContext") or {}).get("sysctls") or []
        env = None
        if sysctls:
            conf = self.workdir / f"containers-{service}.conf"
            conf.write_text(containers_conf_with_sysctls(
                [f"{s['name']}={s['value']}" for s in sysctls]))
            env = {**os.environ, "CONTAINERS_CONF": str(conf)}
        # The size flag only for a pod with its own user namespace: with the host's, podman
        # 4.3 would still map the pod into an auto range, which the assigned UID is not in.
        sizing = ["--userns=auto:size=65536"] if pod_spec.get("hostUsers") is False else []
        result = subprocess.run(
            ["podman", "kube", "play", *sizing, "--network", network, str(manifest)],
            capture_output=True, text=True, check=False, timeout=600, env=env)
        assert result.returncode == 0, result.stderr
        return played

    def wait_ready(self, pod: PlayedPod, timeout: float) -> float:
        """Run the readiness probe until it passes; the seconds it took."""
        started = time.monotonic()
        while True:
            state = podman("inspect", "-f", "{{.State.Status}}", pod.container,
                           check=False).stdout.strip()
            assert state == "running", f"{pod.container} is {state!r}\n{pod.logs()}"
            if podman("exec", pod.container, *pod.probe, check=False).returncode == 0:
                return time.monotonic() - started
            assert time.monotonic() - started < timeout, \
                f"{pod.container} not ready in {timeout}s\n{pod.logs()}"
            time.sleep(2)

    def down(self) -> None:
        for pod in reversed(list({p.pod: p for p in self.pods.values()}.values())):
            podman("kube", "play", "--down", str(pod.manifest), check=False)
            named = [v["name"] for v in pod.pod_spec.get("volumes", []) if "emptyDir" in v]
            for doc in yaml.safe_load_all(pod.manifest.read_text()):
                if doc["kind"] == "PersistentVolumeClaim":
                    named.append(doc["metadata"]["name"])
            for volume in named:
                podman("volume", "rm", "-f", volume, check=False)
        # What a play that failed half-way left (its pods were never registered above):
        # everything is named after the play.
        for pod in podman("pod", "ls", "--format", "{{.Name}}").stdout.split():
            if pod.startswith(f"{self.name}-"):
                podman("pod", "rm", "-f", pod, check=False)
        for volume in podman("volume", "ls", "-q").stdout.split():
            if volume.startswith(f"{self.name}-"):
                podman("volume", "rm", "-f", volume, check=False)
        podman("network", "rm", "-f", self.network, check=False)
