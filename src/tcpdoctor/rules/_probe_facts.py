"""Shared facts for the PRB rules: which containers run probes, how long a probe tolerates
failure, what a path looks like, what the manifest literally wrote.

Kept apart from the rules so that no two rules compute the same thing twice, and so that the
cross-layer (XL) rules can use the same notions.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from tcpdoctor.evidence.manifests import Container, ManifestSet, Probe, Workload
from tcpdoctor.model import Evidence

# Kinds whose pods are meant to run until replaced (a Pod or a Job may run to completion).
SERVING_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"})

STARTUP_ANNOTATION = "tcpdoctor.io/startup-seconds"  # how long the container takes to start (PRB005)
DRAIN_ANNOTATION = "tcpdoctor.io/drain-seconds"  # how long in-flight requests take to finish (PRB016)
TYPICAL_DRAIN_SECONDS = 10  # PRB016's drain when the workload does not state one

PROBE_KEYS = {"liveness": "livenessProbe", "readiness": "readinessProbe", "startup": "startupProbe"}


def probed_containers(
    mset: ManifestSet, kinds: frozenset[str] | None = None
) -> Iterator[tuple[Workload, Container]]:
    """(workload, container) for every container that can carry probes: regular containers and
    sidecar init containers (``restartPolicy: Always``), optionally only for some workload kinds."""
    for w in mset.workloads:
        if kinds is not None and w.kind not in kinds:
            continue
        for c in w.containers:
            yield w, c
        for c in w.init_containers:
            if c.restart_policy == "Always":
                yield w, c


def probes_of(mset: ManifestSet) -> Iterator[tuple[Workload, Container, Probe]]:
    for w, c in probed_containers(mset):
        for p in c.probes.values():
            yield w, c, p


def probe_key(probe: Probe) -> str:
    """``livenessProbe`` / ``readinessProbe`` / ``startupProbe``."""
    return PROBE_KEYS[probe.kind]


def timing(probe: Probe) -> str:
    """The probe's timing as the manifest means it, defaults filled in."""
    return (
        f"initialDelaySeconds {probe.initial_delay_seconds}, periodSeconds {probe.period_seconds}, "
        f"timeoutSeconds {probe.timeout_seconds}, failureThreshold {probe.failure_threshold}"
    )


_FIELD_ATTRS = {
    "initialDelaySeconds": "initial_delay_seconds",
    "periodSeconds": "period_seconds",
    "timeoutSeconds": "timeout_seconds",
    "successThreshold": "success_threshold",
    "failureThreshold": "failure_threshold",
    "port": "port",
    "path": "path",
    "host": "host",
    "scheme": "scheme",
    "command": "command",
}


def field_value(probe: Probe, field: str) -> str:
    """A probe field's effective value as text (``1``, ``http``, ``[sh, -c, ...]``)."""
    attr = _FIELD_ATTRS.get(field)
    value = getattr(probe, attr) if attr else written(probe, field)
    if isinstance(value, list):
        return "[" + ", ".join(value) + "]"
    return str(value)


def probe_evidence(probe: Probe, *, field: str | None = None) -> Evidence:
    """The probe (``livenessProbe: httpGet http://:8080/healthz (periodSeconds 10, ...)``) at its key, or
    one field first (``livenessProbe.failureThreshold 1; httpGet ...``) at that field's value.

    A field the manifest did not write is quoted with its API default and "(default)", at the probe key.
    """
    whole = f"{probe.describe()} ({timing(probe)})"
    if field is None:
        return Evidence("manifest", f"{probe_key(probe)}: {whole}", probe.location)
    if field in probe.field_locations:
        quoted = f"{probe_key(probe)}.{field} {field_value(probe, field)}"
    else:
        quoted = f"{probe_key(probe)}.{field} {field_value(probe, field)} (default)"
    return Evidence("manifest", f"{quoted}; {whole}", probe.field_location(field))


def annotation_evidence(workload: Workload, key: str, text: str) -> Evidence:
    """An annotation quoted as ``key: text``, at its value (the pod template's when both have it)."""
    return Evidence("manifest", f"{key}: {text}", workload.annotation_locations.get(key, workload.location))


def container_value_evidence(container: Container, name: str, text: str) -> Evidence:
    """A container value (``image``, ``resources.limits.cpu``) quoted as ``name text``, at that value."""
    return Evidence("manifest", f"{name} {text}", container.field_location(name))


def failure_window(probe: Probe) -> int:
    """Seconds of consecutive failures before the kubelet acts: failureThreshold x periodSeconds."""
    return probe.failure_threshold * probe.period_seconds


def startup_budget(probe: Probe) -> int:
    """Seconds from container start until a never-answering probe has failed for good:
    initialDelaySeconds + failureThreshold x periodSeconds."""
    return probe.initial_delay_seconds + failure_window(probe)


def written(probe: Probe, field: str) -> Any:
    """The value the manifest literally wrote for a probe field (before API defaulting), or None."""
    raw = probe.raw
    if isinstance(raw, dict):
        return raw.get(field)
    return None


def annotation(workload: Workload, key: str) -> str | None:
    """An annotation from the object or its pod template (the template wins)."""
    return workload.template_annotations.get(key) or workload.annotations.get(key)


def seconds_annotation(workload: Workload, key: str) -> float | None:
    """A number of seconds from an annotation (``"90"``, ``"90s"``, ``"2m"``), or None."""
    value = annotation(workload, key)
    if value is None:
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|m|min)?\s*", value)
    if not m:
        return None
    number = float(m.group(1))
    return number * 60 if m.group(2) in ("m", "min") else number


def fmt_seconds(value: float) -> str:
    return f"{value:g} s"


def path_words(path: str | None) -> list[str]:
    """The words of a URL path, lower-cased: ``/api/v1/Events-stream?x=1`` → api, v1, events, stream."""
    if not path:
        return []
    return [w for w in re.split(r"[/\-_.?&=]+", path.split("?", 1)[0].lower()) if w]


def path_matches(path: str | None, words: frozenset[str], phrases: tuple[str, ...] = ()) -> str | None:
    """The word (or multi-segment phrase such as ``health/full``) of ``path`` that matches, or None."""
    if not path:
        return None
    lowered = path.split("?", 1)[0].lower().rstrip("/")
    for phrase in phrases:
        if lowered.endswith(phrase) or f"{phrase}/" in lowered:
            return phrase
    return next((w for w in path_words(path) if w in words), None)


def service_evidence(mset: ManifestSet, workload: Workload, container: Container) -> list[Evidence]:
    hits = mset.served_ports(workload, container)
    return [
        Evidence(
            "manifest",
            f"Service/{svc.name} port {sp.port} → {sp.target_port if sp.target_port is not None else sp.port}",
            sp.location or svc.location,
        )
        for svc, sp in hits
    ]


def port_name_of(container: Container, probe: Probe) -> str | None:
    """The name of the container port the probe targets (written as a name, or a number that has one)."""
    if isinstance(probe.port, str) and not probe.port.isdigit():
        return probe.port
    number = probe.resolved_port
    return next((p.name for p in container.ports if p.container_port == number and p.name), None)
