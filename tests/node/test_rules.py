"""Every KRN rule on recorded snapshots: a case that must trigger it and a close case that must not.

The snapshots are built from a healthy node's values and changed in one place, the way
a real node would differ (these are the cases a namespace cannot reproduce: node-wide
conntrack, neighbour and softnet state, and counter growth between two samples).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest

from tcpdoctor.commands.node import audit
from tcpdoctor.evidence.node import (
    Address,
    Counters,
    Link,
    Listener,
    NetState,
    NodeSnapshot,
    PeerCount,
    Route,
    SocketCensus,
)
from tcpdoctor.model import Finding


def counters(at: float, **values: int) -> Counters:
    snmp = {
        "Tcp": {"OutSegs": values.get("OutSegs", 1_000_000), "RetransSegs": values.get("RetransSegs", 500)},
        "TcpExt": {
            "ListenOverflows": values.get("ListenOverflows", 0),
            "ListenDrops": values.get("ListenDrops", 0),
            "TCPTimeouts": values.get("TCPTimeouts", 10),
        },
    }
    conntrack = {
        name: values.get(name, 0) for name in ("entries", "invalid", "drop", "early_drop", "insert_failed")
    }
    softnet = [{"processed": 10_000, "dropped": values.get("dropped", 0), "time_squeeze": 3}] * 2
    return Counters(taken_at=at, snmp=snmp, conntrack=conntrack, softnet=softnet)


def healthy() -> NodeSnapshot:
    return NodeSnapshot(
        hostname="node-a",
        kernel="6.18.0",
        netns="net:[4026531840]",
        privileged=True,
        sysctls={
            "net.core.somaxconn": "4096",
            "net.core.netdev_max_backlog": "1000",
            "net.ipv4.ip_local_port_range": "32768 60999",
            "net.ipv4.tcp_tw_reuse": "2",
            "net.ipv4.tcp_timestamps": "1",
            "net.ipv4.tcp_keepalive_time": "120",
            "net.ipv4.tcp_keepalive_intvl": "30",
            "net.netfilter.nf_conntrack_count": "1000",
            "net.netfilter.nf_conntrack_max": "262144",
            "net.netfilter.nf_conntrack_tcp_be_liberal": "0",
            "net.ipv4.neigh.default.gc_thresh3": "1024",
            "net.ipv6.neigh.default.gc_thresh3": "1024",
            "net.ipv4.conf.all.rp_filter": "0",
            "net.ipv4.conf.eth0.rp_filter": "0",
            "net.ipv4.conf.eth1.rp_filter": "0",
        },
        counters=counters(1010.0),
        baseline=counters(1000.0),
        sockets=SocketCensus(
            total=3,
            states={"LISTEN": 1, "ESTABLISHED": 1, "TIME_WAIT": 1},
            listeners=[
                Listener("0.0.0.0:8080", 8080, queued=0, backlog=4096, inode=7, pid=1234, process="server")
            ],
            peers=[PeerCount("10.0.0.2:5432", time_wait=1, established=1)],
        ),
        net=NetState(
            links=[
                Link(1, "lo", "", 65536),
                Link(2, "eth0", "", 1500),
                Link(3, "eth1", "", 1500),
                Link(4, "flannel.1", "vxlan", 1450, parent="eth0"),
                Link(5, "veth1234", "veth", 1450, peer_in_other_netns=True),
            ],
            addresses=[
                Address("eth0", "192.168.1.10", 24),
                Address("eth1", "172.31.0.10", 24),
                Address("flannel.1", "10.244.1.0", 32),
            ],
            routes=[
                Route("0.0.0.0/0", "eth0", "192.168.1.1"),
                Route("192.168.1.0/24", "eth0"),
                Route("172.31.0.0/24", "eth1"),
                Route("10.244.2.0/24", "flannel.1", "10.244.2.0"),
            ],
            neighbours={"ipv4": 100, "ipv6": 4},
        ),
    )


def rules_of(snap: NodeSnapshot) -> dict[str, list[Finding]]:
    found: dict[str, list[Finding]] = {}
    for f in audit(snap):
        found.setdefault(f.rule, []).append(f)
    return found


def test_a_healthy_node_has_no_findings() -> None:
    assert rules_of(healthy()) == {}


def set_sysctl(name: str, value: str) -> Callable[[NodeSnapshot], None]:
    def change(snap: NodeSnapshot) -> None:
        snap.sysctls[name] = value

    return change


def grow(**values: int) -> Callable[[NodeSnapshot], None]:
    def change(snap: NodeSnapshot) -> None:
        snap.counters = counters(1010.0, **values)

    return change


def queue(queued: int) -> Callable[[NodeSnapshot], None]:
    def change(snap: NodeSnapshot) -> None:
        assert snap.sockets is not None
        snap.sockets.listeners[0].queued = queued

    return change


def peer(time_wait: int, established: int, port_range: str = "32768 60999") -> Callable[[NodeSnapshot], None]:
    def change(snap: NodeSnapshot) -> None:
        assert snap.sockets is not None
        snap.sockets.peers = [
            PeerCount("10.0.0.9:443", time_wait=time_wait, established=established, local="192.168.1.10")
        ]
        snap.sysctls["net.ipv4.ip_local_port_range"] = port_range

    return change


def link_mtu(name: str, mtu: int) -> Callable[[NodeSnapshot], None]:
    def change(snap: NodeSnapshot) -> None:
        assert snap.net is not None
        link = snap.net.link(name)
        assert link is not None
        link.mtu = mtu

    return change


def cidrs(service: str | None = None, pod: str | None = None) -> Callable[[NodeSnapshot], None]:
    def change(snap: NodeSnapshot) -> None:
        snap.service_cidrs = [service] if service else []
        snap.pod_cidrs = [pod] if pod else []

    return change


def neighbours(n: int) -> Callable[[NodeSnapshot], None]:
    def change(snap: NodeSnapshot) -> None:
        assert snap.net is not None
        snap.net.neighbours["ipv4"] = n

    return change


def ipvs_tcp(seconds: int) -> Callable[[NodeSnapshot], None]:
    def change(snap: NodeSnapshot) -> None:
        assert snap.net is not None
        snap.net.ipvs = {"tcp": seconds, "tcpfin": 120, "udp": 300}

    return change


def both(*changes: Callable[[NodeSnapshot], None]) -> Callable[[NodeSnapshot], None]:
    def change(snap: NodeSnapshot) -> None:
        for c in changes:
            c(snap)

    return change


# (rule, change that must trigger it, text the message must carry, close change that must not)
CASES: list[tuple[str, Callable[[NodeSnapshot], None], str, Callable[[NodeSnapshot], None]]] = [
    (
        "KRN001",
        grow(ListenOverflows=3120, ListenDrops=3120),
        "ListenOverflows +312/s (+3120 in 10.0 s)",
        grow(),
    ),
    # sk_acceptq_is_full() is sk_ack_backlog > sk_max_ack_backlog: a queue at its backlog still takes one
    ("KRN001", queue(4097), "0.0.0.0:8080 backlog 4097/4096 held by pid 1234 (server)", queue(4096)),
    (
        "KRN002",
        set_sysctl("net.core.somaxconn", "128"),
        "net.core.somaxconn is 128",
        set_sysctl("net.core.somaxconn", "1024"),
    ),
    (
        "KRN003",
        set_sysctl("net.netfilter.nf_conntrack_count", "220000"),
        "conntrack table 220000/262144 entries (84% full)",
        set_sysctl("net.netfilter.nf_conntrack_count", "200000"),
    ),
    ("KRN003", grow(early_drop=50), "early_drop +5/s (+50 in 10.0 s)", grow(invalid=0)),
    (
        "KRN004",
        peer(14000, 200),
        "14200 outgoing sockets from 192.168.1.10 to 10.0.0.9:443 (14000 TIME_WAIT + 200 established) use 50% "
        "of the 28232 ephemeral ports",
        peer(14000, 100),
    ),
    (
        "KRN004",
        peer(60, 0, "40000 40099"),
        "60 outgoing sockets from 192.168.1.10 to 10.0.0.9:443 (60 TIME_WAIT + 0 established) use 60% of the "
        "100 ephemeral ports 40000-40099",
        peer(40, 0, "40000 40099"),
    ),
    (
        "KRN005",
        grow(invalid=700),
        "conntrack invalid +70/s (+700 in 10.0 s) with nf_conntrack_tcp_be_liberal = 0",
        both(grow(invalid=700), set_sysctl("net.netfilter.nf_conntrack_tcp_be_liberal", "1")),
    ),
    (
        "KRN006",
        link_mtu("flannel.1", 1500),
        "vxlan device flannel.1 has MTU 1500",
        link_mtu("flannel.1", 1450),
    ),
    (
        "KRN006",
        link_mtu("veth1234", 1500),
        "pod veth device(s) (veth1234 MTU 1500) have an MTU above the overlay flannel.1 (MTU 1450)",
        link_mtu("veth1234", 1450),
    ),
    (
        "KRN007",
        cidrs(service="192.168.0.0/16"),
        "service CIDR 192.168.0.0/16 overlaps address 192.168.1.10/24 on eth0; route 192.168.1.0/24 dev eth0",
        cidrs(service="10.96.0.0/12"),
    ),
    (
        "KRN007",
        cidrs(service="10.96.0.0/12", pod="10.64.0.0/10"),
        "service CIDR 10.96.0.0/12 and pod CIDR 10.64.0.0/10 overlap",
        cidrs(service="10.96.0.0/12", pod="10.244.0.0/16"),
    ),
    ("KRN008", neighbours(900), "900 ipv4 neighbour entries are 88% of gc_thresh3 1024", neighbours(800)),
    ("KRN009", grow(dropped=10), "softnet backlog dropped +2/s (+20 packets in 10.0 s)", grow(dropped=0)),
    (
        "KRN010",
        grow(OutSegs=1_100_000, RetransSegs=2_500),
        "2000 TCP segments retransmitted in 10.0 s (1.96% of 102000 sent)",
        grow(OutSegs=1_100_000, RetransSegs=1_400),
    ),
    ("KRN010", grow(TCPTimeouts=40), "TCPTimeouts +3/s (+30 in 10.0 s)", grow(TCPTimeouts=10)),
    (
        "KRN011",
        both(set_sysctl("net.ipv4.tcp_keepalive_time", "7200"), ipvs_tcp(900)),
        "tcp_keepalive_time is 7200 s, longer than kube-proxy IPVS (tcp) 900 s",
        both(set_sysctl("net.ipv4.tcp_keepalive_time", "600"), ipvs_tcp(900)),
    ),
    # the kernel default alone, with no middlebox known on the node's paths, is not a finding
    (
        "KRN011",
        both(set_sysctl("net.ipv4.tcp_keepalive_time", "120"), ipvs_tcp(60)),
        "longer than kube-proxy IPVS (tcp) 60 s",
        set_sysctl("net.ipv4.tcp_keepalive_time", "7200"),
    ),
    (
        "KRN012",
        set_sysctl("net.ipv4.tcp_tw_recycle", "1"),
        "net.ipv4.tcp_tw_recycle exists and is 1",
        set_sysctl("net.ipv4.tcp_tw_reuse", "1"),
    ),
    (
        "KRN012",
        both(set_sysctl("net.ipv4.tcp_timestamps", "0"), set_sysctl("net.ipv4.tcp_tw_reuse", "1")),
        "tcp_timestamps is 0 while tcp_tw_reuse is 1: TIME_WAIT reuse needs the timestamps the connection "
        "recorded, so outgoing connects never reuse a TIME_WAIT port",
        both(set_sysctl("net.ipv4.tcp_timestamps", "0"), set_sysctl("net.ipv4.tcp_tw_reuse", "0")),
    ),
    (
        "KRN012",
        set_sysctl("net.ipv4.conf.eth1.rp_filter", "1"),
        "strict rp_filter (1) on eth1 of a node with 2 addressed interfaces (eth0, eth1) and overlay flannel.1",
        set_sysctl("net.ipv4.conf.eth1.rp_filter", "2"),
    ),
]


@pytest.mark.parametrize(
    ("rule_id", "trigger", "text", "close"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_rule_triggers_and_close_case_does_not(
    rule_id: str,
    trigger: Callable[[NodeSnapshot], None],
    text: str,
    close: Callable[[NodeSnapshot], None],
) -> None:
    snap = healthy()
    trigger(snap)
    found = rules_of(snap)
    assert rule_id in found, f"{rule_id} did not trigger"
    assert any(text in f.message for f in found[rule_id]), [f.message for f in found[rule_id]]
    assert all(f.subject.node == "node-a" for f in found[rule_id])
    quiet = healthy()
    close(quiet)
    assert rule_id not in rules_of(quiet)


def test_krn001_since_boot_without_a_full_queue_is_info() -> None:
    """ListenOverflows since boot on a node whose listeners are all fine now: may be weeks old."""
    snap = healthy()
    snap.baseline = None
    snap.counters = counters(1010.0, ListenOverflows=47, ListenDrops=47)
    (finding,) = rules_of(snap)["KRN001"]
    assert finding.severity.label == "info"
    assert "ListenOverflows 47 since boot" in finding.message
    assert "no listener is over its backlog right now" in finding.message
    assert finding.message.endswith("(since boot; rerun with --interval for a rate)")


def test_krn001_since_boot_with_a_full_listener_now_is_an_error() -> None:
    snap = healthy()
    snap.baseline = None
    snap.counters = counters(1010.0, ListenOverflows=47, ListenDrops=47)
    queue(4097)(snap)
    (finding,) = rules_of(snap)["KRN001"]
    assert finding.severity.label == "error"
    assert "0.0.0.0:8080 backlog 4097/4096 held by pid 1234 (server)" in finding.message


def test_krn001_a_growing_rate_is_an_error() -> None:
    snap = healthy()
    snap.baseline = counters(1000.0, ListenOverflows=47, ListenDrops=47)
    snap.counters = counters(1010.0, ListenOverflows=57, ListenDrops=57)
    (finding,) = rules_of(snap)["KRN001"]
    assert finding.severity.label == "error"
    assert "ListenOverflows +1/s (+10 in 10.0 s)" in finding.message
    assert "since boot" not in finding.message
    snap.counters = counters(1010.0, ListenOverflows=47, ListenDrops=47)  # old overflows, none since
    assert "KRN001" not in rules_of(snap)


def test_krn012_timestamps_off_with_the_default_reuse_is_info_about_loopback() -> None:
    snap = healthy()
    snap.sysctls["net.ipv4.tcp_timestamps"] = "0"  # tcp_tw_reuse stays at its default, 2
    (finding,) = rules_of(snap)["KRN012"]
    assert finding.severity.label == "info"
    assert "tcp_tw_reuse is 2" in finding.message
    assert "loopback-only reuse" in finding.message
    assert "never reuse a TIME_WAIT port and wait" not in finding.message
    snap.sysctls["net.ipv4.tcp_tw_reuse"] = "1"
    (finding,) = rules_of(snap)["KRN012"]
    assert finding.severity.label == "warning"


def test_krn004_old_snapshot_without_local_address() -> None:
    snap = healthy()
    assert snap.sockets is not None
    snap.sockets.peers = [PeerCount("10.0.0.9:443", time_wait=20000, established=0)]
    (finding,) = rules_of(snap)["KRN004"]
    assert finding.message.startswith("20000 outgoing sockets to 10.0.0.9:443 (")
    assert finding.subject.connection == "* -> 10.0.0.9:443"


def test_krn001_an_idle_listener_with_backlog_0_is_not_full() -> None:
    snap = healthy()
    assert snap.sockets is not None
    snap.sockets.listeners[0].backlog = 0
    assert "KRN001" not in rules_of(snap)
    snap.sockets.listeners[0].queued = 1  # listen(fd, 0) still queues one: full only above it
    assert "backlog 1/0" in rules_of(snap)["KRN001"][0].message


def test_krn003_error_when_nearly_full() -> None:
    snap = healthy()
    snap.sysctls["net.netfilter.nf_conntrack_count"] = "250000"
    (finding,) = rules_of(snap)["KRN003"]
    assert finding.severity.label == "error"


def test_krn007_ignores_kube_ipvs0_clusterips_and_cni_pod_routes() -> None:
    snap = healthy()
    assert snap.net is not None
    snap.net.links.append(Link(9, "kube-ipvs0", "", 1500))
    snap.net.addresses.append(Address("kube-ipvs0", "10.96.0.1", 32))
    snap.service_cidrs = ["10.96.0.0/12"]
    snap.pod_cidrs = ["10.244.0.0/16"]  # flannel.1 routes and address are the pod network itself
    assert "KRN007" not in rules_of(snap)
    snap.net.routes.append(Route("10.0.0.0/8", "eth1", "172.31.0.1"))  # a VPC route that holds both ranges
    messages = [f.message for f in rules_of(snap)["KRN007"]]
    assert any(
        "service CIDR 10.96.0.0/12 overlaps route 10.0.0.0/8 via 172.31.0.1 dev eth1" in m for m in messages
    )
    assert any("pod CIDR 10.244.0.0/16 overlaps route 10.0.0.0/8" in m for m in messages)


def test_snapshot_dict_round_trip_is_exact() -> None:
    snap = healthy()
    snap.skipped = {"sockets": "sock_diag dump failed: Operation not permitted"}
    again = NodeSnapshot.from_dict(copy.deepcopy(snap.to_dict()))
    assert again == snap
    assert [f.to_dict() for f in audit(again)] == [f.to_dict() for f in audit(snap)]


def test_krn006_route_mtu_lowers_it_to_info() -> None:
    """Cilium's way: cilium_vxlan stays at 1500 and its routes carry mtu 1450."""
    snap = healthy()
    assert snap.net is not None
    snap.net.links = [
        Link(1, "lo", "", 65536),
        Link(2, "eth0", "", 1500),
        Link(3, "cilium_vxlan", "vxlan", 1500),
        Link(4, "cilium_host", "veth", 1500),
    ]
    (finding,) = rules_of(snap)["KRN006"]
    assert finding.severity.label == "error"
    snap.net.routes.append(Route("10.0.1.0/24", "cilium_host", "10.0.0.1", mtu=1450))
    (finding,) = rules_of(snap)["KRN006"]
    assert finding.severity.label == "info"
    assert "routes carry mtu 1450 ≤ 1450" in finding.message
    snap.net.routes[-1].mtu = 1500
    (finding,) = rules_of(snap)["KRN006"]
    assert finding.severity.label == "error"


def test_krn004_reusable_time_wait_does_not_count() -> None:
    """tcp_tw_reuse 2 (the default) lets connects to loopback take over TIME_WAIT ports: a sidecar's
    20000 TIME_WAITs towards 127.0.0.1:15001 are no pressure; with reuse 0 or no timestamps they are."""
    snap = healthy()
    assert snap.sockets is not None
    snap.sockets.peers = [PeerCount("127.0.0.1:15001", time_wait=20000, established=10, local="127.0.0.1")]
    assert "KRN004" not in rules_of(snap)
    snap.sysctls["net.ipv4.tcp_tw_reuse"] = "0"
    (finding,) = rules_of(snap)["KRN004"]
    assert finding.message.startswith(
        "20010 outgoing sockets from 127.0.0.1 to 127.0.0.1:15001 (20000 TIME_WAIT"
    )
    snap.sysctls["net.ipv4.tcp_tw_reuse"] = "2"
    snap.sysctls["net.ipv4.tcp_timestamps"] = "0"  # no timestamp recorded: nothing to reuse
    assert "KRN004" in rules_of(snap)
    # reuse 1 covers every destination, but established sockets still hold their ports
    snap.sysctls["net.ipv4.tcp_timestamps"] = "1"
    snap.sysctls["net.ipv4.tcp_tw_reuse"] = "1"
    snap.sockets.peers = [PeerCount("10.0.0.9:443", time_wait=20000, established=15000, local="192.168.1.10")]
    (finding,) = rules_of(snap)["KRN004"]
    assert (
        "15000 outgoing sockets from 192.168.1.10 to 10.0.0.9:443 (15000 established; its 20000 TIME_WAIT "
        in (finding.message)
    )
    snap.sockets.peers[0].established = 14000
    assert "KRN004" not in rules_of(snap)


@pytest.mark.parametrize(
    ("endpoint", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.4.5:80", True),
        ("[::1]:8080", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("[::ffff:127.0.0.1]:80", True),
        ("10.0.0.9:443", False),
        ("[fd00::1]:80", False),
        ("", False),
    ],
)
def test_is_loopback(endpoint: str, loopback: bool) -> None:
    from tcpdoctor.rules.kernel import is_loopback

    assert is_loopback(endpoint) is loopback
