"""Evidence read from Kubernetes manifests: workloads, their containers and probes, Services.

Plain records with positions, produced by ``tcpdoctor.sources.manifests`` and read
by the PRB rules and the cross-layer (XL) rules. Defaults are the API server's
(probe: initialDelaySeconds 0, periodSeconds 10, timeoutSeconds 1,
successThreshold 1, failureThreshold 3; terminationGracePeriodSeconds 30), and
``explicit`` says which fields the manifest really set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from tcpdoctor.model import Location, Subject

ProbeKind = Literal["liveness", "readiness", "startup"]
HandlerKind = Literal["httpGet", "tcpSocket", "grpc", "exec", "none"]
ContainerKind = Literal["container", "init", "ephemeral"]

PROBE_DEFAULTS: dict[str, int] = {
    "initialDelaySeconds": 0,
    "periodSeconds": 10,
    "timeoutSeconds": 1,
    "successThreshold": 1,
    "failureThreshold": 3,
}
DEFAULT_GRACE_SECONDS = 30
LONG_RUNNING_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Pod"})
WORKLOAD_KINDS = frozenset({*LONG_RUNNING_KINDS, "Job", "CronJob"})


@dataclass
class Probe:
    kind: ProbeKind
    handler: HandlerKind
    location: Location  # the `livenessProbe:` key
    initial_delay_seconds: int = 0
    period_seconds: int = 10
    timeout_seconds: int = 1
    success_threshold: int = 1
    failure_threshold: int = 3
    # httpGet / tcpSocket / grpc
    path: str | None = None
    port: int | str | None = None  # as written: a number or a port name
    resolved_port: int | None = None  # a named port resolved against the container's ports
    scheme: str = "HTTP"
    host: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    grpc_service: str | None = None
    # exec
    command: list[str] = field(default_factory=list)
    explicit: frozenset[str] = frozenset()  # the fields the manifest set
    field_locations: dict[str, Location] = field(default_factory=dict)  # field name -> position of its value
    raw: Any = None  # the ruamel mapping, for fixes

    def field_location(self, name: str) -> Location:
        return self.field_locations.get(name, self.location)

    @property
    def window_seconds(self) -> int:
        """How long a failing endpoint is tolerated: failureThreshold x periodSeconds."""
        return self.failure_threshold * self.period_seconds

    def same_check(self, other: Probe) -> bool:
        """Same handler target (what is asked), ignoring thresholds."""
        return (
            self.handler,
            self.path,
            self.resolved_port or self.port,
            self.scheme,
            self.host,
            tuple(self.command),
            self.grpc_service,
        ) == (
            other.handler,
            other.path,
            other.resolved_port or other.port,
            other.scheme,
            other.host,
            tuple(other.command),
            other.grpc_service,
        )

    def describe(self) -> str:
        if self.handler == "httpGet":
            return f"httpGet {self.scheme.lower()}://:{self.port}{self.path or '/'}"
        if self.handler == "tcpSocket":
            return f"tcpSocket :{self.port}"
        if self.handler == "grpc":
            return f"grpc :{self.port}" + (f" service {self.grpc_service}" if self.grpc_service else "")
        if self.handler == "exec":
            return "exec " + " ".join(self.command)
        return "no handler"


@dataclass
class ContainerPort:
    container_port: int
    name: str | None = None
    protocol: str = "TCP"
    location: Location | None = None


@dataclass
class PreStop:
    action: Literal["exec", "httpGet", "tcpSocket", "sleep"]
    location: Location
    sleep_seconds: float | None = None  # lifecycle.preStop.sleep.seconds, or `sleep N` in an exec command
    command: list[str] = field(default_factory=list)


@dataclass
class Container:
    name: str
    image: str
    location: Location  # the `- name:` line of the container
    kind: ContainerKind = "container"
    ports: list[ContainerPort] = field(default_factory=list)
    probes: dict[str, Probe] = field(default_factory=dict)  # "liveness" | "readiness" | "startup"
    pre_stop: PreStop | None = None
    cpu_limit_millicores: int | None = None
    cpu_request_millicores: int | None = None
    command: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # literal values only
    restart_policy: str | None = None  # "Always" on a sidecar init container (it then has probes)
    raw: Any = None
    # where values stand: "image", "resources.limits.cpu", and the probe keys ("livenessProbe", ...)
    field_locations: dict[str, Location] = field(default_factory=dict)

    def field_location(self, name: str) -> Location:
        return self.field_locations.get(name, self.location)

    def probe(self, kind: ProbeKind) -> Probe | None:
        return self.probes.get(kind)

    def port_named(self, name: str) -> ContainerPort | None:
        return next((p for p in self.ports if p.name == name), None)

    def resolve_port(self, port: int | str | None) -> int | None:
        if isinstance(port, int):
            return port
        if isinstance(port, str):
            if port.isdigit():
                return int(port)
            named = self.port_named(port)
            return named.container_port if named else None
        return None


@dataclass
class Workload:
    """A Pod or an object with a pod template (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob)."""

    kind: str
    name: str
    namespace: str | None
    location: Location  # the object's first line (`apiVersion:` / `kind:`)
    api_version: str = ""
    annotations: dict[str, str] = field(default_factory=dict)  # the object's own
    template_annotations: dict[str, str] = field(default_factory=dict)  # the pod template's
    labels: dict[str, str] = field(default_factory=dict)  # the pod template's labels
    containers: list[Container] = field(default_factory=list)
    init_containers: list[Container] = field(default_factory=list)
    ephemeral_containers: list[Container] = field(default_factory=list)
    termination_grace_period_seconds: int = DEFAULT_GRACE_SECONDS
    grace_explicit: bool = False
    grace_location: Location | None = None
    pod_spec_location: Location | None = None
    doc_index: int = 0  # which document of its file
    raw: Any = None  # the whole object (ruamel mapping)
    # annotation key -> where its value stands (the pod template's when both have it)
    annotation_locations: dict[str, Location] = field(default_factory=dict)

    @property
    def long_running(self) -> bool:
        return self.kind in LONG_RUNNING_KINDS

    def subject(self, container: Container | None = None) -> Subject:
        return Subject(
            kind=self.kind,
            namespace=self.namespace,
            name=self.name,
            container=container.name if container else None,
        )

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name}"

    def ignored_rules(self) -> set[str]:
        """IDs from the `tcpdoctor.io/ignore` annotation on the object or its pod template."""
        ids: set[str] = set()
        for ann in (self.annotations, self.template_annotations):
            value = ann.get("tcpdoctor.io/ignore", "")
            ids.update(p.strip().upper() for p in str(value).split(",") if p.strip())
        return ids


@dataclass
class ServicePort:
    port: int
    target_port: int | str | None = None  # defaults to `port` when unset
    name: str | None = None
    protocol: str = "TCP"
    app_protocol: str | None = None
    location: Location | None = None  # the value of `port:`


@dataclass
class Service:
    name: str
    namespace: str | None
    location: Location
    selector: dict[str, str] = field(default_factory=dict)
    ports: list[ServicePort] = field(default_factory=list)
    type: str = "ClusterIP"
    cluster_ip: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    raw: Any = None

    def selects(self, workload: Workload) -> bool:
        if not self.selector:
            return False
        if (self.namespace or "default") != (workload.namespace or "default"):
            return False
        return all(workload.labels.get(k) == v for k, v in self.selector.items())


@dataclass
class KubeObject:
    """Any other object kept for rules that need it (Ingress, ConfigMap, kube-proxy config, ...)."""

    kind: str
    name: str
    namespace: str | None
    location: Location
    api_version: str = ""
    annotations: dict[str, str] = field(default_factory=dict)
    raw: Any = None


@dataclass
class ParseError:
    """A file that could not be read as YAML/JSON (reported by rule TDR001)."""

    path: str
    message: str
    line: int | None = None
    column: int | None = None


@dataclass
class ManifestSet:
    files: list[str] = field(default_factory=list)
    workloads: list[Workload] = field(default_factory=list)
    services: list[Service] = field(default_factory=list)
    objects: list[KubeObject] = field(default_factory=list)
    parse_errors: list[ParseError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # files skipped (binary, too large, Helm templates)
    # files not read at all (binary, too large, I/O error): also in notes
    unreadable: list[ParseError] = field(default_factory=list)

    # services indexed by (namespace, first selector label): services_for is called per container by
    # several rules, and a linear scan made large scans quadratic (10,000 workloads x 4,000 Services)
    _service_index: dict[tuple[str, str, str], list[Service]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _service_index_size: int = field(default=-1, init=False, repr=False, compare=False)

    def services_for(self, workload: Workload) -> list[Service]:
        if self._service_index_size != len(self.services):
            self._service_index = {}
            for svc in self.services:
                if svc.selector:
                    k, v = next(iter(svc.selector.items()))
                    self._service_index.setdefault((svc.namespace or "default", k, v), []).append(svc)
            self._service_index_size = len(self.services)
        ns = workload.namespace or "default"
        found: list[Service] = []
        for k, v in workload.labels.items():
            found.extend(s for s in self._service_index.get((ns, k, v), ()) if s.selects(workload))
        return sorted(found, key=self.services.index) if len(found) > 1 else found

    def served_ports(self, workload: Workload, container: Container) -> list[tuple[Service, ServicePort]]:
        """The (Service, port) pairs whose targetPort lands on this container."""
        hits: list[tuple[Service, ServicePort]] = []
        declared = {p.container_port for p in container.ports}
        names = {p.name for p in container.ports if p.name}
        for svc in self.services_for(workload):
            for sp in svc.ports:
                target = sp.target_port if sp.target_port is not None else sp.port
                if (isinstance(target, int) and target in declared) or (
                    isinstance(target, str) and target in names
                ):
                    hits.append((svc, sp))
        return hits

    def objects_of(self, kind: str) -> list[KubeObject]:
        return [o for o in self.objects if o.kind == kind]
