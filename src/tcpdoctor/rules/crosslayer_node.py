"""XL010: the cluster's own Service and pod CIDRs (from the scanned files) against a node snapshot.

Where the ranges come from, most certain first:
- kube-apiserver / kube-controller-manager ``--service-cluster-ip-range`` and kube-proxy /
  kube-controller-manager ``--cluster-cidr`` in the command or args of a scanned container
  (static pod manifests, DaemonSets);
- ConfigMaps: kube-proxy's ``clusterCIDR:`` and kubeadm's ``serviceSubnet:`` / ``podSubnet:``;
- ``tcpdoctor scan --service-cidr`` (evidence kind "cluster_cidrs");
- the ``clusterIP`` of each scanned Service: one address, not the range (the range is only
  implied loosely), so each is checked as a /32 (/128) of its own.
The overlap test is KRN007's (``cidr_conflicts``); ranges already given to the node audit
(the snapshot's own service/pod CIDRs) are left to KRN007, so nothing is reported twice.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass

from tcpdoctor.evidence.manifests import Container, ManifestSet
from tcpdoctor.model import Evidence, Finding, Fix, Location, Severity, Subject
from tcpdoctor.rules.kernel import Network, cidr_conflicts, node_subject, snapshot_of
from tcpdoctor.rules.registry import EvidenceBag, rule

FLAGS = {"--service-cluster-ip-range": "service", "--cluster-cidr": "pod"}
CONFIG_KEYS = {"serviceSubnet": "service", "podSubnet": "pod", "clusterCIDR": "pod"}
_CONFIG_LINE = re.compile(r"^\s*(serviceSubnet|podSubnet|clusterCIDR)\s*:\s*[\"']?([0-9A-Fa-f.:/,]+)", re.M)


@dataclass(frozen=True)
class ClusterRange:
    role: str  # "service" | "pod"
    network: Network
    origin: str  # where it was found, for the message
    location: Location | None
    subject: Subject | None = None


def _networks(text: str) -> list[Network]:
    out = []
    for part in text.split(","):
        try:
            out.append(ipaddress.ip_network(part.strip(), strict=False))
        except ValueError:
            continue
    return out


def _flag_values(tokens: list[str], flag: str) -> list[str]:
    """``--flag=value`` and ``--flag value`` forms."""
    values = []
    for i, token in enumerate(tokens):
        if token.startswith(flag + "="):
            values.append(token.split("=", 1)[1])
        elif token == flag and i + 1 < len(tokens):
            values.append(tokens[i + 1])
    return values


def _flag_location(container: Container, flag: str) -> Location:
    """The line of the command/args item that holds ``flag`` (positions kept by the manifest loader)."""
    raw = container.raw
    for key in ("command", "args"):
        items = raw.get(key) if hasattr(raw, "get") else None
        positions = getattr(items, "data", None)
        if not isinstance(items, list) or not isinstance(positions, list):
            continue
        for item, where in zip(items, positions, strict=False):
            if str(item).split("=", 1)[0].split()[0:1] == [flag]:
                return Location(container.location.path, where[0] + 1, where[1] + 1)
    return container.location


def cluster_ranges(mset: ManifestSet, given: list[str]) -> list[ClusterRange]:
    ranges: list[ClusterRange] = []
    for workload in mset.workloads:
        for container in [*workload.containers, *workload.init_containers]:
            tokens = [t for arg in [*container.command, *container.args] for t in str(arg).split()]
            for flag, role in FLAGS.items():
                for value in _flag_values(tokens, flag):
                    for net in _networks(value):
                        ranges.append(
                            ClusterRange(
                                role,
                                net,
                                f"{flag} of {workload.ref} container {container.name}",
                                _flag_location(container, flag),
                                workload.subject(container),
                            )
                        )
    for obj in mset.objects_of("ConfigMap"):
        data = obj.raw.get("data") if hasattr(obj.raw, "get") else None
        if data is None or not hasattr(data, "items"):
            continue
        for key, text in data.items():
            for match in _CONFIG_LINE.finditer(str(text)):
                for net in _networks(match.group(2)):
                    ranges.append(
                        ClusterRange(
                            CONFIG_KEYS[match.group(1)],
                            net,
                            f"{match.group(1)} in ConfigMap {obj.name} ({key})",
                            obj.location,
                            Subject(kind="ConfigMap", namespace=obj.namespace, name=obj.name),
                        )
                    )
    for value in given:
        for net in _networks(value):
            ranges.append(ClusterRange("service", net, "--service-cidr", None))
    return ranges


def _cluster_ips(mset: ManifestSet) -> Iterator[ClusterRange]:
    for svc in mset.services:
        ip = svc.cluster_ip
        if not ip or ip == "None":
            continue
        try:
            net = ipaddress.ip_network(ip)
        except ValueError:
            continue
        yield ClusterRange(
            "service",
            net,
            f"clusterIP of Service {svc.namespace or 'default'}/{svc.name}",
            svc.location,
            Subject(kind="Service", namespace=svc.namespace, name=svc.name),
        )


@rule(
    "XL010",
    name="cluster-cidr-overlaps-node",
    severity=Severity.ERROR,
    summary="Service CIDR from the manifests / flags overlaps node routes (KRN007 with the cluster's own values)",
    needs=("node", "manifests"),
)
def cluster_cidr_overlaps_node(bag: EvidenceBag) -> Iterator[Finding]:
    snap = snapshot_of(bag)
    mset: ManifestSet = bag.get("manifests")
    given = bag.maybe("cluster_cidrs") or []
    known = {str(ipaddress.ip_network(c, strict=False)) for c in [*snap.service_cidrs, *snap.pod_cidrs]}
    ranges = [r for r in cluster_ranges(mset, list(given)) if str(r.network) not in known]
    seen: set[tuple[str, str]] = set()
    for found in [*ranges, *_cluster_ips(mset)]:
        if (found.role, str(found.network)) in seen:
            continue
        seen.add((found.role, str(found.network)))
        conflicts = cidr_conflicts(snap, found.network, found.role)
        if not conflicts:
            continue
        what = (
            f"{found.role} CIDR {found.network}"
            if found.network.num_addresses > 1
            else f"{found.origin.split(' of ', 1)[0]} {found.network.network_address}"
        )
        node = node_subject(snap).node
        yield cluster_cidr_overlaps_node.finding(
            f"{what} ({found.origin}) overlaps node {node}'s {'; '.join(conflicts[:3])}"
            + (f" and {len(conflicts) - 3} more" if len(conflicts) > 3 else "")
            + ": the cluster captures traffic meant for that node network",
            location=found.location,
            subject=found.subject or node_subject(snap),
            evidence=[
                Evidence("manifest", found.origin, found.location),
                *(Evidence("node", c) for c in conflicts),
            ],
            fix=Fix(
                f"move the conflicting node network, or create the cluster with a {found.role} range that no "
                "node network uses (the range cannot be changed in place)"
            ),
            severity=Severity.ERROR if found.network.num_addresses > 1 else Severity.WARNING,
        )
