"""From a finding to the exact place it is about: in the evidence records, then in the round-trip YAML.

The PRB rules report on a workload container (``subject``) and point at a probe, or at a
field of it (``location``). :func:`resolve` finds those records in the scanned
:class:`ManifestSet`; :func:`pod_spec` and friends walk the same object in the
round-trip document so that a fix edits the node the finding is about.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

from tcpdoctor.evidence.manifests import Container, ManifestSet, Probe, Workload
from tcpdoctor.model import Finding, Location

PROBE_KEYS = {"liveness": "livenessProbe", "readiness": "readinessProbe", "startup": "startupProbe"}


@dataclass
class Target:
    """What a finding is about, as evidence records."""

    workload: Workload
    container: Container | None = None
    probe: Probe | None = None
    field: str | None = None  # the probe field the finding points at (PRB010's successThreshold, ...)
    manifests: ManifestSet | None = None  # all it was found in (to join the Go servers: XL004)


def _same_line(a: Location | None, b: Location | None) -> bool:
    return a is not None and b is not None and a.path == b.path and a.line == b.line


def _find_workload(finding: Finding, manifests: ManifestSet) -> Workload | None:
    subject = finding.subject
    candidates = [
        w
        for w in manifests.workloads
        if w.kind == subject.kind
        and w.name == subject.name
        and (w.namespace or "default") == (subject.namespace or "default")
    ]
    if len(candidates) > 1 and finding.location is not None:
        # the same object twice (two files, or a List and a file): keep the one in the finding's file
        in_file = [w for w in candidates if w.location.path == finding.location.path]
        candidates = in_file or candidates
    return candidates[0] if candidates else None


def resolve(finding: Finding, manifests: ManifestSet) -> Target | None:
    workload = _find_workload(finding, manifests)
    if workload is None:
        return None
    target = Target(workload, manifests=manifests)
    if finding.subject.container is None:
        return target
    containers = [*workload.containers, *workload.init_containers]
    target.container = next((c for c in containers if c.name == finding.subject.container), None)
    if target.container is None:
        return target
    for probe in target.container.probes.values():
        for name, loc in probe.field_locations.items():
            if _same_line(loc, finding.location):
                target.probe, target.field = probe, name
                return target
        if _same_line(probe.location, finding.location):
            target.probe = probe
    return target


# --- the same object in the round-trip document ---------------------------------------------------------


def _objects(data: Any) -> list[MutableMapping[str, Any]]:
    """The Kubernetes objects of one document: itself, or the items of a `kind: List`."""
    if not isinstance(data, MutableMapping):
        return []
    if str(data.get("kind", "")).endswith("List") and isinstance(data.get("items"), list):
        return [item for item in data["items"] if isinstance(item, MutableMapping)]
    return [data]


def find_object(data: Any, workload: Workload) -> MutableMapping[str, Any] | None:
    for obj in _objects(data):
        meta = obj.get("metadata")
        if (
            obj.get("kind") == workload.kind
            and isinstance(meta, MutableMapping)
            and meta.get("name") == workload.name
        ):
            return obj
    return None


def pod_spec(obj: MutableMapping[str, Any]) -> MutableMapping[str, Any] | None:
    """The pod spec of a Pod or of a workload's pod template."""
    path: tuple[str, ...]
    kind = obj.get("kind")
    if kind == "Pod":
        path = ("spec",)
    elif kind == "CronJob":
        path = ("spec", "jobTemplate", "spec", "template", "spec")
    else:
        path = ("spec", "template", "spec")
    node: Any = obj
    for key in path:
        node = node.get(key) if isinstance(node, MutableMapping) else None
    return node if isinstance(node, MutableMapping) else None


def find_container(spec: MutableMapping[str, Any], name: str) -> MutableMapping[str, Any] | None:
    for key in ("containers", "initContainers"):  # sidecar init containers have probes too
        for item in spec.get(key) or []:
            if isinstance(item, MutableMapping) and item.get("name") == name:
                return item
    return None
