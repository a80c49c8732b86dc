"""From loaded documents to the records of :mod:`tcpdoctor.evidence.manifests`.

Works on both loaders' output (fast :class:`~.loader.PosMap` or ruamel ``CommentedMap``):
positions are read through ``node.lc``. Documents that are not Kubernetes objects (no
string ``apiVersion`` and ``kind``: Helm values, CI files, docker-compose) are ignored
quietly. ``kind: List`` and typed lists (``DeploymentList``, as the API returns them)
are unpacked.

What Kubernetes does, and so what the records say:

* workloads are Pod (``spec``), Deployment / StatefulSet / DaemonSet / ReplicaSet / Job
  (``spec.template``) and CronJob (``spec.jobTemplate.spec.template``);
* probes belong to regular containers and to *sidecar* init containers
  (``restartPolicy: Always``); the API server rejects probes on other init containers and
  on ephemeral containers (pkg/apis/core/validation/validation.go), so those keep none;
* a named probe port is resolved against the container's own ``ports`` (the kubelet does
  the same: pkg/kubelet/prober/prober.go → ``probe.ResolveContainerPort``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from tcpdoctor.evidence.manifests import (
    PROBE_DEFAULTS,
    WORKLOAD_KINDS,
    Container,
    ContainerKind,
    ContainerPort,
    HandlerKind,
    KubeObject,
    ManifestSet,
    PreStop,
    Probe,
    ProbeKind,
    Service,
    ServicePort,
    Workload,
)
from tcpdoctor.model import Location
from tcpdoctor.sources.manifests.loader import Document

PROBE_KEYS: dict[str, ProbeKind] = {
    "livenessProbe": "liveness",
    "readinessProbe": "readiness",
    "startupProbe": "startup",
}
_PROBE_INT_FIELDS = {
    "initialDelaySeconds": "initial_delay_seconds",
    "periodSeconds": "period_seconds",
    "timeoutSeconds": "timeout_seconds",
    "successThreshold": "success_threshold",
    "failureThreshold": "failure_threshold",
}
_HANDLERS: tuple[HandlerKind, ...] = ("httpGet", "tcpSocket", "grpc", "exec")
_PROBE_FIELD_SET = frozenset({*_PROBE_INT_FIELDS, *_HANDLERS})
_SLEEP_IN_SHELL = re.compile(r"(?:^|[;&|(\s])sleep\s+(\d+(?:\.\d+)?)(s?)\b")


# -- positions ---------------------------------------------------------------------------


def _lc(node: Any) -> Any:
    return getattr(node, "lc", None)


def node_location(path: str, node: Any) -> Location:
    """Where a mapping or sequence starts (1-based), or the file when unknown."""
    lc = _lc(node)
    if lc is None or lc.line is None:
        return Location(path)
    return Location(path, lc.line + 1, lc.col + 1)


def _position(node: Any, key: Any) -> tuple[int, ...] | None:
    """The recorded (line, col[, value line, value col]) of ``key`` in a mapping or sequence."""
    lc = _lc(node)
    try:
        return tuple(lc.data[key]) if lc is not None else None
    except (KeyError, IndexError, TypeError):
        return None


def key_location(path: str, mapping: Any, key: str) -> Location:
    """Where ``key:`` stands in ``mapping``, falling back to the mapping itself."""
    pos = _position(mapping, key)
    return Location(path, pos[0] + 1, pos[1] + 1) if pos else node_location(path, mapping)


def value_location(path: str, mapping: Any, key: str) -> Location:
    """Where the value of ``key`` stands: the value itself for a scalar, the key for a block."""
    pos = _position(mapping, key)
    if not pos:
        return node_location(path, mapping)
    try:
        block = isinstance(mapping[key], dict | list)
    except (KeyError, IndexError, TypeError):
        return node_location(path, mapping)
    if block or len(pos) < 4:
        return Location(path, pos[0] + 1, pos[1] + 1)
    return Location(path, pos[2] + 1, pos[3] + 1)


def item_location(path: str, seq: Any, index: int) -> Location:
    pos = _position(seq, index)
    return Location(path, pos[0] + 1, pos[1] + 1) if pos else node_location(path, seq)


# -- plain value helpers -----------------------------------------------------------------


def _map(value: Any) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return str(value)
    return None


def _int(value: Any) -> int | None:
    """An integer field as the API would read it (ints, and strings of digits); else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    return None


def _str_map(value: Any) -> dict[str, str]:
    return {
        str(k): str(v) for k, v in _map(value).items() if v is not None and not isinstance(v, dict | list)
    }


def _port(value: Any) -> int | str | None:
    """A port as written: an int, or a name (IntOrString)."""
    number = _int(value)
    if number is not None:
        return number
    return value if isinstance(value, str) and value else None


def parse_cpu(value: Any) -> int | None:
    """A Kubernetes CPU quantity in millicores: "250m" → 250, "0.5" → 500, 1 → 1000, "2" → 2000."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return round(value * 1000)
    text = str(value).strip()
    m = re.fullmatch(r"([0-9]*\.?[0-9]+)(m|k|M|G|u|n)?", text)
    if not m:
        return None
    number = float(m.group(1))
    factor = {None: 1000.0, "m": 1.0, "k": 1e6, "M": 1e9, "G": 1e12, "u": 1e-3, "n": 1e-6}[m.group(2)]
    return max(round(number * factor), 1 if number > 0 else 0)


# -- records -----------------------------------------------------------------------------


_HANDLER_SET = frozenset(_HANDLERS)
_SUB_FIELDS = frozenset({"port", "host", "path", "scheme", "service", "command"})


def _fields(
    path: str, mapping: Any, wanted: frozenset[str] | dict[str, str]
) -> Iterator[tuple[str, Any, Location]]:
    """(key, value, location) for the keys of ``mapping`` in ``wanted``, in one pass (the hot path).

    The location is the value's for a scalar and the key's for a block, as value_location says.
    """
    lc = getattr(mapping, "lc", None)
    data = lc.data if lc is not None else None
    for key, value in mapping.items():
        if key not in wanted:
            continue
        pos = data.get(key) if data is not None else None
        if pos is None:
            yield key, value, node_location(path, mapping)
        elif isinstance(value, dict | list):
            yield key, value, Location(path, pos[0] + 1, pos[1] + 1)
        else:
            yield key, value, Location(path, pos[2] + 1, pos[3] + 1)


def _probe(path: str, kind: ProbeKind, container: dict[Any, Any], key: str) -> Probe | None:
    spec = container.get(key)
    if not isinstance(spec, dict):
        return None
    handler: HandlerKind = next((h for h in _HANDLERS if isinstance(spec.get(h), dict)), "none")
    probe = Probe(kind=kind, handler=handler, location=key_location(path, container, key), raw=spec)
    explicit: set[str] = set()
    locations: dict[str, Location] = {}
    for name, value, where in _fields(path, spec, _PROBE_FIELD_SET):
        explicit.add(name)
        locations[name] = where
        attr = _PROBE_INT_FIELDS.get(name)
        if attr is not None:
            number = _int(value)
            if number is None or number == 0:
                # the API server defaults a zero (or absent) field: SetDefaults_Probe in
                # pkg/apis/core/v1/defaults.go; the written value stays in probe.raw (rule PRB010)
                number = PROBE_DEFAULTS[name]
            setattr(probe, attr, number)
    body = _map(spec.get(handler))
    for name, _value, where in _fields(path, body, _SUB_FIELDS):
        if name == "command" and handler != "exec":
            continue
        explicit.add(name)
        locations[name] = where
    if handler in ("httpGet", "tcpSocket", "grpc"):
        probe.port = _port(body.get("port"))
        probe.host = _str(body.get("host")) or None
    if handler == "httpGet":
        probe.path = _str(body.get("path"))
        probe.scheme = (_str(body.get("scheme")) or "HTTP").upper()
        headers = body.get("httpHeaders")
        if headers:
            probe.headers = [
                (str(h.get("name", "")), str(h.get("value", "")))
                for h in _list(headers)
                if isinstance(h, dict)
            ]
    elif handler == "grpc":
        probe.grpc_service = _str(body.get("service"))
    elif handler == "exec":
        probe.command = [str(c) for c in _list(body.get("command")) if c is not None]
    probe.explicit = frozenset(explicit)
    probe.field_locations = locations
    return probe


def _sleep_seconds(command: list[str]) -> float | None:
    """`sleep N` in an exec preStop: ["sleep", "5"], ["/bin/sh", "-c", "sleep 5 && ..."]."""
    if len(command) >= 2 and command[0].rsplit("/", 1)[-1] == "sleep":
        try:
            return float(command[1].rstrip("s"))
        except ValueError:
            return None
    for part in command:
        m = _SLEEP_IN_SHELL.search(part)
        if m:
            return float(m.group(1))
    return None


def _pre_stop(path: str, container: dict[Any, Any]) -> PreStop | None:
    lifecycle = _map(container.get("lifecycle"))
    spec = lifecycle.get("preStop")
    if not isinstance(spec, dict):
        return None
    where = key_location(path, lifecycle, "preStop")
    if isinstance(spec.get("sleep"), dict):
        seconds = _int(spec["sleep"].get("seconds"))
        return PreStop("sleep", where, sleep_seconds=float(seconds) if seconds is not None else None)
    if isinstance(spec.get("exec"), dict):
        command = [str(c) for c in _list(spec["exec"].get("command")) if c is not None]
        return PreStop("exec", where, sleep_seconds=_sleep_seconds(command), command=command)
    if isinstance(spec.get("httpGet"), dict):
        return PreStop("httpGet", where)
    if isinstance(spec.get("tcpSocket"), dict):
        return PreStop("tcpSocket", where)
    return None


def _container(path: str, seq: Any, index: int, spec: Any, kind: ContainerKind) -> Container | None:
    if not isinstance(spec, dict):
        return None
    resources = _map(spec.get("resources"))
    restart_policy = _str(spec.get("restartPolicy"))
    c = Container(
        name=_str(spec.get("name")) or f"#{index}",
        image=_str(spec.get("image")) or "",
        location=item_location(path, seq, index),
        kind=kind,
        cpu_limit_millicores=parse_cpu(_map(resources.get("limits")).get("cpu")),
        cpu_request_millicores=parse_cpu(_map(resources.get("requests")).get("cpu")),
        command=[str(x) for x in _list(spec.get("command")) if x is not None],
        args=[str(x) for x in _list(spec.get("args")) if x is not None],
        env={
            str(e["name"]): str(e["value"])
            for e in _list(spec.get("env"))
            if isinstance(e, dict) and "name" in e and "value" in e and e["value"] is not None
        },
        restart_policy=restart_policy,
        raw=spec,
    )
    c.field_locations = _container_locations(path, spec, resources)
    ports = _list(spec.get("ports"))
    for i, p in enumerate(ports):
        number = _int(p.get("containerPort")) if isinstance(p, dict) else None
        if number is None:
            continue
        c.ports.append(
            ContainerPort(
                container_port=number,
                name=_str(p.get("name")),
                protocol=_str(p.get("protocol")) or "TCP",
                location=item_location(path, ports, i),
            )
        )
    if kind == "container" or (kind == "init" and restart_policy == "Always"):
        for key, probe_kind in PROBE_KEYS.items():
            probe = _probe(path, probe_kind, spec, key)
            if probe is not None:
                probe.resolved_port = c.resolve_port(probe.port)
                c.probes[probe_kind] = probe
        c.pre_stop = _pre_stop(path, spec)
    return c


def _container_locations(path: str, spec: dict[Any, Any], resources: dict[Any, Any]) -> dict[str, Location]:
    """Where the container's quoted values stand: its image, CPU limit and request, and probe keys."""
    found: dict[str, Location] = {}
    if "image" in spec:
        found["image"] = value_location(path, spec, "image")
    for section in ("limits", "requests"):
        values = resources.get(section)
        if isinstance(values, dict) and "cpu" in values:
            found[f"resources.{section}.cpu"] = value_location(path, values, "cpu")
    for key in PROBE_KEYS:
        if key in spec:
            found[key] = key_location(path, spec, key)
    return found


def _annotation_locations(path: str, *metas: dict[Any, Any]) -> dict[str, Location]:
    """annotation key -> where its value stands; later ``metas`` (the pod template) win."""
    found: dict[str, Location] = {}
    for meta in metas:
        annotations = meta.get("annotations")
        if isinstance(annotations, dict):
            for key in annotations:
                found[str(key)] = value_location(path, annotations, key)
    return found


def _containers(path: str, pod_spec: dict[Any, Any], key: str, kind: ContainerKind) -> list[Container]:
    seq = pod_spec.get(key)
    out: list[Container] = []
    for i, spec in enumerate(_list(seq)):
        c = _container(path, seq, i, spec, kind)
        if c is not None:
            out.append(c)
    return out


def _template(kind: str, obj: dict[Any, Any]) -> tuple[dict[Any, Any], dict[Any, Any]] | None:
    """(template metadata, the mapping that holds the pod `spec:`) of a workload object."""
    spec = _map(obj.get("spec"))
    if kind == "Pod":
        return _map(obj.get("metadata")), obj
    if kind == "CronJob":
        spec = _map(_map(spec.get("jobTemplate")).get("spec"))
    template = spec.get("template")
    if not isinstance(template, dict):
        return None
    return _map(template.get("metadata")), template


def _workload(path: str, doc_index: int, kind: str, obj: dict[Any, Any]) -> Workload | None:
    found = _template(kind, obj)
    if found is None:
        return None
    template_meta, holder = found
    pod_spec = _map(holder.get("spec"))
    meta = _map(obj.get("metadata"))
    grace = _int(pod_spec.get("terminationGracePeriodSeconds"))
    w = Workload(
        kind=kind,
        name=_str(meta.get("name")) or _str(meta.get("generateName")) or "(unnamed)",
        namespace=_str(meta.get("namespace")),
        location=node_location(path, obj),
        api_version=_str(obj.get("apiVersion")) or "",
        annotations=_str_map(meta.get("annotations")),
        template_annotations={} if kind == "Pod" else _str_map(template_meta.get("annotations")),
        labels=_str_map(template_meta.get("labels")),
        doc_index=doc_index,
        raw=obj,
        pod_spec_location=key_location(path, holder, "spec") if "spec" in holder else None,
        annotation_locations=_annotation_locations(path, meta, *(() if kind == "Pod" else (template_meta,))),
    )
    if "terminationGracePeriodSeconds" in pod_spec:
        w.grace_explicit = True
        w.grace_location = value_location(path, pod_spec, "terminationGracePeriodSeconds")
        if grace is not None:
            w.termination_grace_period_seconds = grace
    w.containers = _containers(path, pod_spec, "containers", "container")
    w.init_containers = _containers(path, pod_spec, "initContainers", "init")
    w.ephemeral_containers = _containers(path, pod_spec, "ephemeralContainers", "ephemeral")
    return w


def _service(path: str, obj: dict[Any, Any]) -> Service:
    meta = _map(obj.get("metadata"))
    spec = _map(obj.get("spec"))
    svc = Service(
        name=_str(meta.get("name")) or "(unnamed)",
        namespace=_str(meta.get("namespace")),
        location=node_location(path, obj),
        selector=_str_map(spec.get("selector")),
        type=_str(spec.get("type")) or "ClusterIP",
        cluster_ip=_str(spec.get("clusterIP")),
        annotations=_str_map(meta.get("annotations")),
        raw=obj,
    )
    for p in _list(spec.get("ports")):
        if not isinstance(p, dict):
            continue
        number = _int(p.get("port"))
        if number is None:
            continue
        svc.ports.append(
            ServicePort(
                port=number,
                target_port=_port(p.get("targetPort")),
                name=_str(p.get("name")),
                protocol=_str(p.get("protocol")) or "TCP",
                app_protocol=_str(p.get("appProtocol")),
                location=value_location(path, p, "port"),
            )
        )
    return svc


def kube_objects(data: Any, item_kind: str | None = None) -> Iterator[tuple[str, dict[Any, Any]]]:
    """(kind, object) for the Kubernetes objects in one document: itself, or a (typed) List's items.

    Typed lists as the API returns them (``DeploymentList``) leave ``kind`` off their items.
    """
    if not isinstance(data, dict):
        return
    kind = data.get("kind", item_kind)
    if not isinstance(kind, str) or not kind:
        return
    if item_kind is None and not isinstance(data.get("apiVersion"), str):
        return
    items = data.get("items")
    if kind.endswith("List") and isinstance(items, list):
        for item in items:
            yield from kube_objects(item, kind[: -len("List")] or None)
        return
    yield kind, data


def extract(documents: Iterable[Document], into: ManifestSet | None = None) -> ManifestSet:
    """Add the workloads, Services and other objects of ``documents`` to a ManifestSet."""
    out = into if into is not None else ManifestSet()
    for doc in documents:
        for kind, obj in kube_objects(doc.data):
            if kind in WORKLOAD_KINDS:
                w = _workload(doc.path, doc.index, kind, obj)
                if w is not None:
                    out.workloads.append(w)
                    continue
            if kind == "Service":
                out.services.append(_service(doc.path, obj))
                continue
            meta = _map(obj.get("metadata"))
            out.objects.append(
                KubeObject(
                    kind=kind,
                    name=_str(meta.get("name")) or "(unnamed)",
                    namespace=_str(meta.get("namespace")),
                    location=node_location(doc.path, obj),
                    api_version=str(obj.get("apiVersion", "")),
                    annotations=_str_map(meta.get("annotations")),
                    raw=obj,
                )
            )
    return out
