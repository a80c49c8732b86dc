"""XL010: the cluster's CIDRs found in the scanned manifests against a node snapshot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tcpdoctor.evidence.node import Address, NodeSnapshot, Route
from tcpdoctor.model import Finding
from tcpdoctor.rules.crosslayer_node import cluster_cidr_overlaps_node
from tcpdoctor.rules.registry import EvidenceBag
from tcpdoctor.sources import manifests
from tcpdoctor.sources.node import snapshot as snapfile

from .test_rules import healthy

TCPDOCTOR = Path(sys.executable).with_name("tcpdoctor")

APISERVER = """apiVersion: v1
kind: Pod
metadata:
  name: kube-apiserver
  namespace: kube-system
spec:
  containers:
  - name: kube-apiserver
    image: registry.k8s.io/kube-apiserver:v1.30.0
    command:
    - kube-apiserver
    - --service-cluster-ip-range={service}
"""

KUBE_PROXY = """apiVersion: v1
kind: ConfigMap
metadata:
  name: kube-proxy
  namespace: kube-system
data:
  config.conf: |-
    apiVersion: kubeproxy.config.k8s.io/v1alpha1
    kind: KubeProxyConfiguration
    clusterCIDR: "{pod}"
"""

SERVICE = """apiVersion: v1
kind: Service
metadata:
  name: legacy-db
spec:
  clusterIP: {ip}
  ports:
  - port: 5432
"""


def node_with(*addresses: tuple[str, str, int]) -> NodeSnapshot:
    snap = healthy()
    assert snap.net is not None
    for ifname, addr, plen in addresses:
        snap.net.addresses.append(Address(ifname, addr, plen))
        net = Address(ifname, addr, plen).network
        snap.net.routes.append(Route(str(net), ifname))
    return snap


def run(tmp_path: Path, text: str, snap: NodeSnapshot, given: list[str] | None = None) -> list[Finding]:
    path = tmp_path / "cluster.yaml"
    path.write_text(text)
    bag = EvidenceBag()
    bag.add("manifests", manifests.collect_files([path]))
    bag.add("node", snap)
    if given:
        bag.add("cluster_cidrs", given)
    return list(cluster_cidr_overlaps_node(bag))


def test_apiserver_flag_overlapping_a_node_address(tmp_path: Path) -> None:
    snap = node_with(("br9", "10.96.5.1", 24))
    (finding,) = run(tmp_path, APISERVER.format(service="10.96.0.0/12"), snap)
    assert finding.severity.label == "error"
    assert finding.message.startswith(
        "service CIDR 10.96.0.0/12 (--service-cluster-ip-range of Pod/kube-apiserver container kube-apiserver) "
        "overlaps node node-a's address 10.96.5.1/24 on br9; route 10.96.5.0/24 dev br9"
    )
    assert finding.location is not None
    assert (finding.location.line, finding.location.column) == (12, 7)  # the flag's own line
    assert finding.subject.name == "kube-apiserver"


def test_apiserver_flag_clear_of_the_node(tmp_path: Path) -> None:
    snap = node_with(("br9", "10.96.5.1", 24))
    assert run(tmp_path, APISERVER.format(service="10.200.0.0/16"), snap) == []


def test_kube_proxy_cluster_cidr_on_a_lan_interface(tmp_path: Path) -> None:
    snap = node_with(("eth2", "10.244.3.4", 24))
    (finding,) = run(tmp_path, KUBE_PROXY.format(pod="10.244.0.0/16"), snap)
    assert "pod CIDR 10.244.0.0/16 (clusterCIDR in ConfigMap kube-proxy (config.conf))" in finding.message
    assert "address 10.244.3.4/24 on eth2" in finding.message


def test_kube_proxy_cluster_cidr_on_the_cni_bridge_is_normal(tmp_path: Path) -> None:
    snap = node_with(("cni0", "10.244.3.1", 24))
    assert run(tmp_path, KUBE_PROXY.format(pod="10.244.0.0/16"), snap) == []


def test_service_cluster_ip_inside_the_node_lan_is_a_warning(tmp_path: Path) -> None:
    (finding,) = run(tmp_path, SERVICE.format(ip="192.168.1.20"), healthy())
    assert finding.severity.label == "warning"
    assert finding.message.startswith(
        "clusterIP 192.168.1.20 (clusterIP of Service default/legacy-db) overlaps"
    )
    assert run(tmp_path, SERVICE.format(ip="10.96.0.20"), healthy()) == []


def test_given_cidr_and_no_duplicate_of_krn007(tmp_path: Path) -> None:
    text = SERVICE.format(ip="None")
    (finding,) = run(tmp_path, text, healthy(), given=["192.168.0.0/16"])
    assert "service CIDR 192.168.0.0/16 (--service-cidr)" in finding.message
    snap = healthy()
    snap.service_cidrs = ["192.168.0.0/16"]  # the node audit already has it: KRN007 reports it
    assert run(tmp_path, text, snap, given=["192.168.0.0/16"]) == []


def test_scan_with_node_snapshot(tmp_path: Path) -> None:
    (tmp_path / "apiserver.yaml").write_text(APISERVER.format(service="10.96.0.0/12"))
    snap_path = tmp_path / "node.json"
    snapfile.write(node_with(("br9", "10.96.5.1", 24)), snap_path)
    proc = subprocess.run(
        [
            str(TCPDOCTOR),
            "scan",
            str(tmp_path / "apiserver.yaml"),
            "--node-snapshot",
            str(snap_path),
            "--format",
            "json",
            "--select",
            "XL010,KRN007",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert [f["rule"] for f in report["findings"]] == ["XL010"]
    assert {"kind": "node", "path": str(snap_path)} in report["inputs"]
