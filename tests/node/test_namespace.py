"""`tcpdoctor node` on the real kernel, inside network namespaces made for the test.

Two namespaces share one set-up each (module fixtures): "bad" holds every condition the
KRN001/002/004/005/006/007 rules look for, "good" the close cases that must stay quiet.
Conntrack INVALID (KRN005) is real: an iptables conntrack rule turns conntrack on in the
namespace and SYN+FIN segments are counted invalid; "good" has nf_conntrack_tcp_be_liberal 1.
Conntrack fill and drops (KRN003), neighbour gc_thresh (KRN008) and softnet drops (KRN009)
cannot be produced inside a namespace without touching node-wide settings
(nf_conntrack_max is read-only outside the initial namespace, gc_thresh and
netdev_max_backlog are global), so they are tested on recorded snapshots in test_rules.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tcpdoctor.lab import netns

HERE = Path(__file__).resolve().parent
TCPDOCTOR = Path(sys.executable).with_name("tcpdoctor")
SERVICE_CIDR = "10.96.0.0/12"
FLOOD = 12
TIME_WAITS = 60
SERVER_TIME_WAITS = 120  # in "good": more than half its 200 ephemeral ports, all towards one remote endpoint
CLIENT_PORT = 20000  # scenario.CLIENT_PORT
INVALID = 5


def _need_root() -> None:
    if not netns.is_root():
        if os.environ.get("CI") == "true":
            pytest.fail("CI must have this: needs root (network namespaces)")
        pytest.skip("needs root (network namespaces)")


def _scenario(ns: netns.Netns, tmp: Path, flood: int, server_time_waits: int) -> tuple[int, int]:
    ready = tmp / f"{ns.name}.ready"
    ns.popen(
        [
            sys.executable,
            str(HERE / "scenario.py"),
            str(ready),
            str(flood),
            str(TIME_WAITS),
            str(server_time_waits),
        ]
    )
    deadline = time.monotonic() + 60
    while not ready.exists() or not ready.read_text().endswith("\n"):
        assert time.monotonic() < deadline, "the scenario did not get ready"
        time.sleep(0.1)
    stuck, closer = ready.read_text().split()
    return int(stuck), int(closer)


def _run_node(ns: netns.Netns, *args: str) -> tuple[int, dict[str, Any], str]:
    proc = ns.run([str(TCPDOCTOR), "node", "--format", "json", *args], check=False, timeout=120)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout), proc.stderr


class Site:
    def __init__(
        self, ns: netns.Netns, ports: tuple[int, int], report: dict[str, Any], snapshot: Path
    ) -> None:
        self.ns, self.report, self.snapshot = ns, report, snapshot
        self.stuck_port, self.closer_port = ports

    def findings(self, rule: str) -> list[dict[str, Any]]:
        return [f for f in self.report["findings"] if f["rule"] == rule]


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Site]]:
    _need_root()
    tmp = tmp_path_factory.mktemp("node-ns")
    with netns.topology("tdtest-") as topo:
        bad, good = topo.host("bad"), topo.host("good")
        # bad: somaxconn 128, 100 ephemeral ports, vxlan whose underlay shrank under it, a Service-range address
        bad.sh(
            "sysctl -qw net.core.somaxconn=128 net.ipv4.ip_local_port_range='40000 40099' net.ipv4.tcp_tw_reuse=0"
            " && ip link add u0 type veth peer name u0p && ip link set u0 mtu 9000 && ip link set u0 up"
            " && ip link add vx0 type vxlan id 42 dev u0 dstport 4789 && ip link set vx0 mtu 8950"
            " && ip link set u0 mtu 1500"
            " && ip link add br9 type bridge && ip addr add 10.96.5.1/24 dev br9 && ip link set br9 up"
        )
        # good: defaults, 200 ephemeral ports for 60 TIME_WAIT, vxlan sized for its underlay, an address outside
        good.sh(
            "sysctl -qw net.ipv4.ip_local_port_range='40000 40199' net.ipv4.tcp_tw_reuse=0"
            " && ip link add u0 type veth peer name u0p && ip link set u0 up"
            " && ip link add vx0 type vxlan id 42 dev u0 dstport 4789 && ip link set vx0 mtu 1450"
            " && ip link add br9 type bridge && ip addr add 10.200.5.1/24 dev br9 && ip link set br9 up"
        )
        good.sh("sysctl -qw net.netfilter.nf_conntrack_tcp_be_liberal=1")
        result = {}
        for ns, flood, server_tw in ((bad, FLOOD, 0), (good, 0, SERVER_TIME_WAITS)):
            ns.sh("iptables -A INPUT -m conntrack --ctstate INVALID -j ACCEPT")
            ns.run([sys.executable, str(HERE / "invalid_packets.py"), str(INVALID)])
            ports = _scenario(ns, tmp, flood, server_tw)
            snap = tmp / f"{ns.name}.json"
            _, report, _ = _run_node(ns, "--service-cidr", SERVICE_CIDR, "--snapshot-out", str(snap))
            result[ns.name.rsplit("-", 1)[1]] = Site(ns, ports, report, snap)
        yield result


def test_krn001_names_the_listener_that_never_accepts(sites: dict[str, Site]) -> None:
    bad = sites["bad"]
    (finding,) = bad.findings("KRN001")
    assert finding["severity"] == "error"
    assert f"127.0.0.1:{bad.stuck_port} backlog 2/1" in finding["message"]
    assert "python" in finding["message"]  # the owning process, found through /proc/<pid>/fd
    overflows = bad.report["node"]["counters"]["snmp"]["TcpExt"]["ListenOverflows"]
    assert overflows > 0
    assert f"ListenOverflows {overflows} since boot" in finding["message"]
    assert sites["good"].findings("KRN001") == []


def test_krn002_somaxconn_per_namespace(sites: dict[str, Site]) -> None:
    (finding,) = sites["bad"].findings("KRN002")
    assert "net.core.somaxconn is 128" in finding["message"]
    assert sites["good"].findings("KRN002") == []
    assert sites["good"].report["node"]["sysctls"]["net.core.somaxconn"] == "4096"


def test_krn004_time_wait_to_one_destination(sites: dict[str, Site]) -> None:
    bad = sites["bad"]
    (finding,) = bad.findings("KRN004")
    assert f"to 127.0.0.1:{bad.closer_port} ({TIME_WAITS} TIME_WAIT + 0 established)" in finding["message"]
    assert "of the 100 ephemeral ports 40000-40099" in finding["message"]
    assert (
        f"{TIME_WAITS} outgoing sockets from 127.0.0.1 to 127.0.0.1:{bad.closer_port}" in finding["message"]
    )
    good = sites["good"]
    assert good.findings("KRN004") == []
    peers = good.report["node"]["sockets"]["peers"]
    closer = f"127.0.0.1:{good.closer_port}"
    assert {"remote": closer, "time_wait": TIME_WAITS, "established": 0, "local": "127.0.0.1"} in peers


def test_krn004_server_side_time_wait_is_not_port_pressure(sites: dict[str, Site]) -> None:
    """The close case: the server closed first, so it holds the TIME_WAITs, on its listening port."""
    good = sites["good"]
    sockets = good.report["node"]["sockets"]
    assert sockets["states"]["TIME_WAIT"] >= TIME_WAITS + SERVER_TIME_WAITS
    # all of them towards one remote endpoint, 120 of 200 ephemeral ports if it were counted
    assert not [p for p in sockets["peers"] if p["remote"] == f"127.0.0.1:{CLIENT_PORT}"]
    assert all(p["remote"] == f"127.0.0.1:{good.closer_port}" for p in sockets["peers"])
    assert good.findings("KRN004") == []


def test_krn006_vxlan_larger_than_its_underlay(sites: dict[str, Site]) -> None:
    (finding,) = sites["bad"].findings("KRN006")
    assert "vxlan device vx0 has MTU 8950" in finding["message"]
    assert "9000 bytes on u0 (MTU 1500)" in finding["message"]
    assert sites["good"].findings("KRN006") == []
    links = {lnk["name"]: lnk for lnk in sites["good"].report["node"]["net"]["links"]}
    assert links["vx0"]["kind"] == "vxlan" and links["vx0"]["parent"] == "u0"


def test_krn007_address_in_the_service_cidr(sites: dict[str, Site]) -> None:
    (finding,) = sites["bad"].findings("KRN007")
    assert "service CIDR 10.96.0.0/12 overlaps address 10.96.5.1/24 on br9" in finding["message"]
    assert "route 10.96.5.0/24 dev br9" in finding["message"]
    assert sites["good"].findings("KRN007") == []


def test_krn005_conntrack_invalid_with_strict_window_tracking(sites: dict[str, Site]) -> None:
    bad = sites["bad"]
    invalid = bad.report["node"]["counters"]["conntrack"]["invalid"]
    assert invalid >= INVALID  # each segment is seen at more than one hook
    (finding,) = bad.findings("KRN005")
    assert finding["severity"] == "info"  # one sample: a count since boot
    assert (
        f"conntrack invalid {invalid} since boot with nf_conntrack_tcp_be_liberal = 0" in finding["message"]
    )
    good = sites["good"]
    assert good.report["node"]["counters"]["conntrack"]["invalid"] >= INVALID
    assert good.report["node"]["sysctls"]["net.netfilter.nf_conntrack_tcp_be_liberal"] == "1"
    assert good.findings("KRN005") == []


def test_snapshot_round_trip_gives_identical_findings(sites: dict[str, Site]) -> None:
    for site in sites.values():
        proc = subprocess.run(
            [str(TCPDOCTOR), "node", "--from", str(site.snapshot), "--format", "json"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode in (0, 1), proc.stderr
        again = json.loads(proc.stdout)
        assert again["findings"] == site.report["findings"]
        assert again["node"] == site.report["node"]


def test_unprivileged_run_says_what_it_skipped(sites: dict[str, Site]) -> None:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("needs setpriv (util-linux)")
    bad = sites["bad"]
    probe = subprocess.run(
        [
            setpriv,
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            sys.executable,
            "-c",
            "import tcpdoctor",
        ],
        capture_output=True,
        timeout=60,
    )
    if probe.returncode != 0:  # the checkout lives where nobody cannot read (e.g. under /root)
        pytest.skip(f"user nobody cannot run this checkout's Python: {probe.stderr.decode()[-200:]}")
    # commands/pcap.py imports numba with cache=True at start-up, which needs a writable cache
    # directory for any user (reported to the lead): give nobody one so that the CLI starts
    cache = Path(tempfile.mkdtemp(prefix="tdtest-numba-"))
    cache.chmod(0o777)
    proc = bad.ns.run(
        [
            "env",
            f"NUMBA_CACHE_DIR={cache}",
            setpriv,
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            str(TCPDOCTOR),
            "node",
        ],
        check=False,
        timeout=120,
    )
    shutil.rmtree(cache, ignore_errors=True)
    assert proc.returncode == 1, proc.stderr  # KRN001 is an error
    assert "unprivileged (partial view)" in proc.stdout
    assert "skipped socket owners" in proc.stdout
    assert "owner not visible" in proc.stdout
    # still the socket census and the sysctls of the namespace
    assert f"127.0.0.1:{bad.stuck_port} backlog 2/1 held by owner not visible" in proc.stdout
    assert "net.core.somaxconn is 128" in proc.stdout


def test_interval_reports_rates_in_the_namespace(sites: dict[str, Site]) -> None:
    bad = sites["bad"]
    _, report, _ = _run_node(bad.ns, "--interval", "1", "--select", "KRN001")
    node = report["node"]
    assert node["baseline"] is not None
    assert 0.9 <= node["counters"]["taken_at"] - node["baseline"]["taken_at"] < 10
    (finding,) = report["findings"]
    # the flooding clients keep retrying their SYNs against the full queue
    assert finding["message"].startswith("ListenOverflows +")
    assert "/s (+" in finding["message"] and " in 1.0 s)" in finding["message"]
    assert "since boot" not in finding["message"]
    assert f"127.0.0.1:{bad.stuck_port} backlog 2/1" in finding["message"]


def test_a_healthy_namespace_is_quiet(sites: dict[str, Site]) -> None:
    """ "good" holds a listener, 60 client TIME_WAITs and 120 server TIME_WAITs, all within limits."""
    assert sites["good"].report["findings"] == []
    assert sites["good"].report["summary"] == {"error": 0, "warning": 0, "info": 0}
