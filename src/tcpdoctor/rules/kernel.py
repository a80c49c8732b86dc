"""KRN: the node's kernel and network state (live, or from a snapshot).

Every rule reads one :class:`NodeSnapshot` (evidence kind "node"). Counters are
judged on their growth between the two samples of ``--interval``; with one sample
they are values since boot, which the messages say and which lowers the severity
where an old event cannot be told from a current one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator

from tcpdoctor.config import Config
from tcpdoctor.evidence.node import Link, NodeSnapshot, PeerCount, describe_growth
from tcpdoctor.model import Evidence, Finding, Fix, Severity, Subject
from tcpdoctor.rules.registry import EvidenceBag, rule

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Encapsulation overhead over an IPv4 underlay (IPv6 adds 20): outer IP + UDP/GRE + tunnel header.
# vxlan: 20 IP + 8 UDP + 8 VXLAN + 14 inner Ethernet (drivers/net/vxlan: VXLAN_HEADROOM 50);
# geneve: GENEVE_IPV4_HLEN 36 + 14 inner Ethernet; wireguard: 20 IP + 8 UDP + 32 (device default 1420).
TUNNEL_OVERHEAD = {
    "vxlan": 50,
    "geneve": 50,
    "ipip": 20,
    "sit": 20,
    "gre": 24,
    "gretap": 38,
    "ip6tnl": 40,
    "ip6gre": 48,
    "wireguard": 60,
}
TUNNEL_NAMES = {"flannel.1": "vxlan", "vxlan.calico": "vxlan", "cilium_vxlan": "vxlan", "tunl0": "ipip"}
CNI_PREFIXES = (
    "cni",
    "cali",
    "flannel",
    "cilium",
    "lxc",
    "weave",
    "vxlan",
    "tunl",
    "kube-",
    "veth",
    "wg",
    "genev",
)
IPVS_DUMMY = "kube-ipvs0"

# Documented idle timeouts of L4 middleboxes that TCP keepalives keep open (RULES.md "known middlebox").
# A node audit cannot see a cloud load balancer: these are offered in the page as values to put
# in .tcpdoctor.toml, and only the node's own IPVS (when loaded) and configured ones are used.
L4_IDLE_TIMEOUTS = {"Azure Load Balancer": 240, "AWS NLB": 350, "kube-proxy IPVS (tcp)": 900}


def snapshot_of(bag: EvidenceBag) -> NodeSnapshot:
    snap = bag.get("node")
    assert isinstance(snap, NodeSnapshot)
    return snap


def node_subject(snap: NodeSnapshot) -> Subject:
    return Subject(kind="Node", node=snap.hostname or "this node")


def sysctl_evidence(snap: NodeSnapshot, *names: str) -> list[Evidence]:
    return [Evidence("node", f"{name} = {snap.sysctls[name]}") for name in names if name in snap.sysctls]


def since(value: tuple[int, float | None] | None) -> bool:
    """True when the value is a count since boot (one sample), not a growth between two."""
    return value is not None and value[1] is None


def grew(value: tuple[int, float | None] | None) -> bool:
    return value is not None and value[0] > 0


# --- KRN001 / KRN002: listen queues ---------------------------------------------------------------


@rule(
    "KRN001",
    name="accept-queue-overflow",
    severity=Severity.ERROR,
    summary="accept queue overflow: ListenOverflows/ListenDrops counted, listeners over their backlog",
    needs=("node",),
)
def accept_queue_overflow(bag: EvidenceBag) -> Iterator[Finding]:
    snap = snapshot_of(bag)
    overflows = snap.growth("TcpExt", "ListenOverflows")
    drops = snap.growth("TcpExt", "ListenDrops")
    census = snap.sockets
    full = [lst for lst in (census.listeners if census else []) if lst.saturated]
    if not grew(overflows) and not grew(drops) and not full:
        return
    somaxconn = snap.sysctl_int("net.core.somaxconn")
    parts = [f"ListenOverflows {describe_growth(overflows)}", f"ListenDrops {describe_growth(drops)}"]
    if full:
        searched = census is not None and census.owners_visible
        parts.append(
            "; ".join(
                f"{lst.local} backlog {lst.queued}/{lst.backlog} held by {lst.owner(searched)}"
                for lst in full[:5]
            )
        )
    else:
        parts.append("no listener is over its backlog right now")
    parts.append(f"somaxconn {somaxconn}")
    # One sample without a full listener is a count since boot: it may be weeks old.
    # A full listener now, or counters that grew between the two samples, is happening now.
    one_sample = snap.baseline is None
    severity = Severity.ERROR if full or not one_sample else Severity.INFO
    evidence = [
        Evidence("node", f"listener {lst.local}: Recv-Q {lst.queued}, Send-Q {lst.backlog}") for lst in full
    ]
    yield accept_queue_overflow.finding(
        "; ".join(parts) + (" (since boot; rerun with --interval for a rate)" if one_sample else ""),
        subject=node_subject(snap),
        severity=severity,
        evidence=[*evidence, *sysctl_evidence(snap, "net.core.somaxconn", "net.ipv4.tcp_max_syn_backlog")],
        fix=Fix(
            "accept faster (more accept goroutines/workers, less work before Accept) and raise the backlog: "
            "listen(backlog) is capped by net.core.somaxconn (Go reads somaxconn as its backlog)"
        ),
    )


@rule(
    "KRN002",
    name="somaxconn-low",
    severity=Severity.WARNING,
    summary="net.core.somaxconn below 1024",
    needs=("node",),
)
def somaxconn_low(bag: EvidenceBag) -> Iterator[Finding]:
    snap = snapshot_of(bag)
    somaxconn = snap.sysctl_int("net.core.somaxconn")
    if somaxconn is None or somaxconn >= 1024:
        return
    capped = [lst for lst in (snap.sockets.listeners if snap.sockets else []) if lst.backlog == somaxconn]
    where = (
        f"; {len(capped)} listener(s) capped at it ({', '.join(lst.local for lst in capped[:3])})"
        if capped
        else ""
    )
    yield somaxconn_low.finding(
        f"net.core.somaxconn is {somaxconn} (kernel default 4096 since 5.4): every listen() backlog is "
        f"silently capped to it{where}",
        subject=node_subject(snap),
        evidence=sysctl_evidence(snap, "net.core.somaxconn"),
        fix=Fix(
            "sysctl -w net.core.somaxconn=4096 (per network namespace; for a pod it is not a safe sysctl: "
            "the kubelet must allow it with --allowed-unsafe-sysctls)"
        ),
    )


# --- KRN003 / KRN005: conntrack -------------------------------------------------------------------


@rule(
    "KRN003",
    name="conntrack-table-full",
    severity=Severity.WARNING,
    summary="conntrack table ≥ 80 % full, or conntrack dropping new connections",
    needs=("node",),
)
def conntrack_table_full(bag: EvidenceBag) -> Iterator[Finding]:
    snap = snapshot_of(bag)
    count = snap.sysctl_int("net.netfilter.nf_conntrack_count")
    limit = snap.sysctl_int("net.netfilter.nf_conntrack_max") or snap.sysctl_int("net.nf_conntrack_max")
    growth = {name: snap.conntrack_growth(name) for name in ("drop", "early_drop", "insert_failed")}
    dropping = {name: g for name, g in growth.items() if grew(g) and not since(g)}
    fill = count / limit if count is not None and limit else 0.0
    if fill < 0.8 and not dropping:
        return
    severity = Severity.ERROR if fill >= 0.95 or dropping else Severity.WARNING
    drops = (
        ", ".join(f"{name} {describe_growth(g)}" for name, g in dropping.items())
        or "no drops between samples"
    )
    yield conntrack_table_full.finding(
        f"conntrack table {count}/{limit} entries ({fill:.0%} full); {drops}",
        subject=node_subject(snap),
        severity=severity,
        evidence=sysctl_evidence(
            snap,
            "net.netfilter.nf_conntrack_count",
            "net.netfilter.nf_conntrack_max",
            "net.netfilter.nf_conntrack_buckets",
        ),
        fix=Fix(
            "raise net.netfilter.nf_conntrack_max (kube-proxy sets it from --conntrack-max-per-core) and shorten "
            "nf_conntrack_tcp_timeout_established (default 432000 s) so idle entries leave sooner"
        ),
    )


@rule(
    "KRN005",
    name="conntrack-invalid-strict",
    severity=Severity.WARNING,
    summary="conntrack marks packets INVALID while nf_conntrack_tcp_be_liberal = 0",
    needs=("node",),
)
def conntrack_invalid_strict(bag: EvidenceBag) -> Iterator[Finding]:
    snap = snapshot_of(bag)
    invalid = snap.conntrack_growth("invalid")
    liberal = snap.sysctl_int("net.netfilter.nf_conntrack_tcp_be_liberal")
    if not grew(invalid) or liberal != 0:
        return
    yield conntrack_invalid_strict.finding(
        f"conntrack invalid {describe_growth(invalid)} with nf_conntrack_tcp_be_liberal = 0: out-of-window "
        "packets are marked INVALID, which kube-proxy's iptables rules drop and which otherwise reach the "
        "host unNATed and are answered with RST",
        subject=node_subject(snap),
        severity=Severity.INFO if since(invalid) else Severity.WARNING,
        evidence=sysctl_evidence(snap, "net.netfilter.nf_conntrack_tcp_be_liberal"),
        fix=Fix(
            "sysctl -w net.netfilter.nf_conntrack_tcp_be_liberal=1 (conntrack then tracks out-of-window "
            "packets instead of marking them INVALID; see kubernetes/kubernetes#74839)"
        ),
    )


# --- KRN004: ephemeral ports ----------------------------------------------------------------------


def port_range(snap: NodeSnapshot) -> tuple[int, int] | None:
    value = snap.sysctl("net.ipv4.ip_local_port_range")
    if not value:
        return None
    try:
        low, high = (int(x) for x in value.split())
    except ValueError:
        return None
    return low, high


def is_loopback(endpoint: str) -> bool:
    """ "127.0.0.1", "10.0.0.2:8080", "[::1]:80", "::ffff:127.0.0.1": a loopback address (v4-mapped too)?"""
    if endpoint.startswith("["):
        host = endpoint[1 : endpoint.find("]")]
    else:
        host = endpoint.rsplit(":", 1)[0] if endpoint.count(":") == 1 else endpoint
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def time_wait_reusable(snap: NodeSnapshot, peer: PeerCount) -> bool:
    """Whether connect() may take over these TIME_WAIT ports: tcp_twsk_unique() (net/ipv4/tcp_ipv4.c)
    reuses a TIME_WAIT socket that recorded a timestamp (tcp_timestamps on) more than 1 s ago when
    tcp_tw_reuse is 1, or is 2 (the default) and the socket's source or destination is loopback."""
    timestamps = snap.sysctl_int("net.ipv4.tcp_timestamps")
    reuse = snap.sysctl_int("net.ipv4.tcp_tw_reuse")
    if not timestamps or not reuse:
        return False
    return reuse == 1 or (reuse == 2 and (is_loopback(peer.local) or is_loopback(peer.remote)))


@rule(
    "KRN004",
    name="ephemeral-port-pressure",
    severity=Severity.WARNING,
    summary="outgoing TIME_WAIT + established from one address to one destination ≥ 50 % of ip_local_port_range",
    needs=("node",),
)
def ephemeral_port_pressure(bag: EvidenceBag) -> Iterator[Finding]:
    snap = snapshot_of(bag)
    span = port_range(snap)
    if span is None or snap.sockets is None:
        return
    size = span[1] - span[0] + 1
    reuse = snap.sysctl("net.ipv4.tcp_tw_reuse")
    for peer in snap.sockets.peers:
        reusable = time_wait_reusable(snap, peer)
        held = peer.established if reusable else peer.total
        if held * 2 < size:
            continue
        source = f" from {peer.local}" if peer.local else ""
        counted = (
            f"{peer.established} established; its {peer.time_wait} TIME_WAIT are reusable"
            if reusable
            else f"{peer.time_wait} TIME_WAIT + {peer.established} established"
        )
        yield ephemeral_port_pressure.finding(
            f"{held} outgoing sockets{source} to {peer.remote} ({counted}) use {held / size:.0%} of the {size} "
            f"ephemeral ports {span[0]}-{span[1]} (tcp_tw_reuse {reuse}): new connects from that address to it "
            "fail with EADDRNOTAVAIL when they run out",
            subject=Subject(
                kind="Node",
                node=snap.hostname or "this node",
                connection=f"{peer.local or '*'} -> {peer.remote}",
            ),
            evidence=sysctl_evidence(snap, "net.ipv4.ip_local_port_range", "net.ipv4.tcp_tw_reuse"),
            fix=Fix(
                "reuse connections (HTTP keep-alive, a shared http.Transport with MaxIdleConnsPerHost >= the "
                "concurrency) instead of one connection per request; widen net.ipv4.ip_local_port_range"
            ),
        )


# --- KRN006 / KRN007: MTU and addresses -----------------------------------------------------------


def tunnel_kind(link: Link) -> str | None:
    if link.kind in TUNNEL_OVERHEAD:
        return link.kind
    if link.name in TUNNEL_NAMES:
        return TUNNEL_NAMES[link.name]
    return None


def underlay_of(snap: NodeSnapshot, link: Link) -> Link | None:
    """The tunnel's own `dev`, else the device of the main table's default route."""
    assert snap.net is not None
    if link.parent:
        return snap.net.link(link.parent)
    for route in snap.net.routes:
        if route.table == 254 and route.network.prefixlen == 0 and route.dev and route.dev != link.name:
            return snap.net.link(route.dev)
    return None


@rule(
    "KRN006",
    name="overlay-mtu-mismatch",
    severity=Severity.ERROR,
    summary="overlay MTU + encapsulation overhead above the underlay MTU, or pod veth MTU above the overlay's",
    needs=("node",),
)
def overlay_mtu_mismatch(bag: EvidenceBag) -> Iterator[Finding]:
    snap = snapshot_of(bag)
    if snap.net is None:
        return
    overlays = [(lnk, kind) for lnk in snap.net.links if (kind := tunnel_kind(lnk))]
    # Some CNIs (Cilium) leave the tunnel device at 1500 and put the MTU on their routes
    # (`... dev cilium_host mtu 1450`): TCP then sizes its segments from the route.
    route_mtus = [r.mtu for r in snap.net.routes if r.mtu]
    for link, kind in overlays:
        underlay = underlay_of(snap, link)
        if underlay is None:
            continue
        overhead = TUNNEL_OVERHEAD[kind]
        if link.mtu + overhead <= underlay.mtu:
            continue
        room = underlay.mtu - overhead
        guarded = bool(route_mtus) and max(route_mtus) <= room
        yield overlay_mtu_mismatch.finding(
            f"{kind} device {link.name} has MTU {link.mtu}: with {overhead} bytes of encapsulation its full-size "
            f"packets are {link.mtu + overhead} bytes on {underlay.name} (MTU {underlay.mtu}), so they are "
            "fragmented or dropped (large responses stall, small requests pass)"
            + (
                f"; routes carry mtu {max(route_mtus)} ≤ {room}, which keeps traffic that follows route MTUs "
                "(TCP) within it, so only the rest is exposed"
                if guarded
                else ""
            ),
            subject=node_subject(snap),
            severity=Severity.INFO if guarded else Severity.ERROR,
            evidence=[
                Evidence("node", f"{link.name} mtu {link.mtu}"),
                Evidence("node", f"{underlay.name} mtu {underlay.mtu}"),
                *(
                    Evidence("node", f"route {r.dst} dev {r.dev} mtu {r.mtu}")
                    for r in snap.net.routes
                    if r.mtu
                ),
            ],
            fix=Fix(f"set {link.name} MTU to at most {room} (the CNI's MTU setting) and recreate pods"),
        )
    if not overlays:
        return
    smallest = min(overlays, key=lambda pair: pair[0].mtu)[0]
    big = [
        lnk
        for lnk in snap.net.links
        if lnk.kind == "veth" and lnk.peer_in_other_netns and lnk.mtu > smallest.mtu
    ]
    if big:
        guarded = bool(route_mtus) and max(route_mtus) <= smallest.mtu
        yield overlay_mtu_mismatch.finding(
            f"{len(big)} pod veth device(s) ({', '.join(f'{v.name} MTU {v.mtu}' for v in big[:3])}) have an MTU "
            f"above the overlay {smallest.name} (MTU {smallest.mtu}): pods send packets the overlay cannot carry"
            + (
                f" unless their routes carry an MTU (node routes do: mtu {max(route_mtus)}; check the pods' own)"
                if guarded
                else ""
            ),
            subject=node_subject(snap),
            severity=Severity.INFO if guarded else Severity.ERROR,
            evidence=[Evidence("node", f"{smallest.name} mtu {smallest.mtu}")],
            fix=Fix(f"give pod interfaces MTU {smallest.mtu} or less (CNI MTU setting)"),
        )


def is_cni_device(name: str | None) -> bool:
    return bool(name) and str(name).startswith(CNI_PREFIXES)


def cidr_conflicts(snap: NodeSnapshot, cidr: Network, role: str) -> list[str]:
    """What on the node overlaps ``cidr``: interface addresses and main-table routes.

    ``role`` "service": any address or route except kube-ipvs0 (IPVS puts every ClusterIP
    there on purpose) and the default route. ``role`` "pod": addresses on non-CNI devices,
    and routes through non-CNI devices that contain the whole pod range (a LAN/VPC route).
    """
    if snap.net is None:
        return []
    found: list[str] = []
    for addr in snap.net.addresses:
        if addr.ifname == IPVS_DUMMY or addr.ifname == "lo":
            continue
        if role == "pod" and is_cni_device(addr.ifname):
            continue
        net = addr.network
        if net.version == cidr.version and net.overlaps(cidr):
            found.append(f"address {addr.address}/{addr.prefixlen} on {addr.ifname}")
    for route in snap.net.routes:
        if route.table == 255 or route.type != "unicast" or route.dev == IPVS_DUMMY:
            continue
        net = route.network
        if net.version != cidr.version or net.prefixlen == 0 or not net.overlaps(cidr):
            continue
        if role == "pod" and (is_cni_device(route.dev) or not cidr.subnet_of(net)):  # type: ignore[arg-type]
            continue
        via = f" via {route.gateway}" if route.gateway else ""
        found.append(f"route {route.dst}{via} dev {route.dev}")
    return found


def parse_cidrs(values: Iterable[str]) -> list[Network]:
    """CIDRs from options or flags ("10.96.0.0/12,fd00::/108"); raises ValueError on a bad one."""
    out: list[Network] = []
    for value in values:
        for part in value.split(","):
            if part.strip():
                out.append(ipaddress.ip_network(part.strip(), strict=False))
    return out


@rule(
    "KRN007",
    name="cidr-overlap",
    severity=Severity.ERROR,
    summary="Service CIDR (or pod CIDR) overlaps a node route, an interface address, or each other",
    needs=("node",),
)
def cidr_overlap(bag: EvidenceBag) -> Iterator[Finding]:
    snap = snapshot_of(bag)
    services, pods = parse_cidrs(snap.service_cidrs), parse_cidrs(snap.pod_cidrs)
    for role, cidrs in (("service", services), ("pod", pods)):
        for cidr in cidrs:
            conflicts = cidr_conflicts(snap, cidr, role)
            if conflicts:
                yield cidr_overlap.finding(
                    f"{role} CIDR {cidr} overlaps {'; '.join(conflicts[:4])}"
                    + (f" and {len(conflicts) - 4} more" if len(conflicts) > 4 else "")
                    + ": traffic to those addresses is captured by the cluster (or leaves by the wrong route)",
                    subject=node_subject(snap),
                    evidence=[Evidence("node", c) for c in conflicts],
                    fix=Fix(
                        f"choose a {role} CIDR that no node network uses (it is fixed at cluster creation)"
                    ),
                )
    for svc in services:
        for pod in pods:
            if svc.version == pod.version and svc.overlaps(pod):
                yield cidr_overlap.finding(
                    f"service CIDR {svc} and pod CIDR {pod} overlap: ClusterIPs and pod IPs collide",
                    subject=node_subject(snap),
                    fix=Fix("give Services and pods disjoint ranges"),
                )


# --- KRN008 / KRN009 / KRN010: tables and counters ------------------------------------------------


@rule(
    "KRN008",
    name="neighbour-table-near-limit",
    severity=Severity.WARNING,
    summary="neighbour table ≥ 80 % of gc_thresh3",
    needs=("node",),
)
def neighbour_table_near_limit(bag: EvidenceBag) -> Iterator[Finding]:
    snap = snapshot_of(bag)
    if snap.net is None:
        return
    pods = sum(1 for lnk in snap.net.links if lnk.kind == "veth" and lnk.peer_in_other_netns)
    for family in ("ipv4", "ipv6"):
        limit = snap.sysctl_int(f"net.{family}.neigh.default.gc_thresh3")
        entries = snap.net.neighbours.get(family, 0)
        if not limit or entries * 5 < limit * 4:
            continue
        yield neighbour_table_near_limit.finding(
            f"{entries} {family} neighbour entries are {entries / limit:.0%} of gc_thresh3 {limit} "
            f"({pods} pod veth devices): past it the kernel logs 'neighbour table overflow' and new "
            "neighbours cannot be resolved",
            subject=node_subject(snap),
            evidence=sysctl_evidence(
                snap,
                f"net.{family}.neigh.default.gc_thresh1",
                f"net.{family}.neigh.default.gc_thresh2",
                f"net.{family}.neigh.default.gc_thresh3",
            ),
            fix=Fix(f"raise net.{family}.neigh.default.gc_thresh1/2/3 (for example 4096/8192/16384)"),
        )


@rule(
    "KRN009",
    name="softnet-backlog-drops",
    severity=Severity.WARNING,
    summary="softnet backlog drops (/proc/net/softnet_stat dropped > 0)",
    needs=("node",),
)
def softnet_backlog_drops(bag: EvidenceBag) -> Iterator[Finding]:
    snap = snapshot_of(bag)
    dropped = snap.softnet_growth("dropped")
    if not grew(dropped):
        return
    squeezed = snap.softnet_growth("time_squeeze")
    yield softnet_backlog_drops.finding(
        f"softnet backlog dropped {describe_growth(dropped, ' packets')} (time_squeeze {describe_growth(squeezed)}) "
        f"with net.core.netdev_max_backlog {snap.sysctl('net.core.netdev_max_backlog')}: packets are lost "
        "before TCP sees them",
        subject=node_subject(snap),
        severity=Severity.INFO if since(dropped) else Severity.WARNING,
        evidence=sysctl_evidence(snap, "net.core.netdev_max_backlog"),
        fix=Fix("raise net.core.netdev_max_backlog (e.g. 5000) and spread receive work (RPS/RSS)"),
    )


@rule(
    "KRN010",
    name="tcp-retransmissions-high",
    severity=Severity.WARNING,
    summary="TCP retransmissions above 1 % of segments sent, or TCPTimeouts growing",
    needs=("node",),
)
def tcp_retransmissions_high(bag: EvidenceBag) -> Iterator[Finding]:
    snap = snapshot_of(bag)
    retrans = snap.growth("Tcp", "RetransSegs")
    sent = snap.growth("Tcp", "OutSegs")  # excludes retransmissions (RFC 1213 tcpOutSegs)
    timeouts = snap.growth("TcpExt", "TCPTimeouts")
    if retrans is None or sent is None:
        return
    total = sent[0] + retrans[0]
    ratio = retrans[0] / total if total >= 100 else 0.0
    timeouts_grow = grew(timeouts) and not since(timeouts)
    if ratio <= 0.01 and not timeouts_grow:
        return
    window = "since boot" if since(sent) else f"in {sent[1]:.1f} s"
    share = f"{ratio:.2%} of {total}" if total >= 100 else f"too few of {total} for a ratio"
    yield tcp_retransmissions_high.finding(
        f"{retrans[0]} TCP segments retransmitted {window} ({share} sent); TCPTimeouts {describe_growth(timeouts)}",
        subject=node_subject(snap),
        severity=Severity.INFO if since(sent) else Severity.WARNING,
        fix=Fix(
            "find the peers with `tcpdoctor trace` (retransmission hotspots) or a capture (`tcpdoctor pcap`)"
        ),
    )


# --- KRN011 / KRN012: settings --------------------------------------------------------------------


def configured_idle_timeouts(bag: EvidenceBag) -> dict[str, int]:
    """`[node] middlebox-idle-timeouts = {"corporate firewall" = 300}` of .tcpdoctor.toml (checked by the CLI)."""
    config = bag.maybe("config")
    section = config.section("node") if isinstance(config, Config) else {}
    table = section.get("middlebox-idle-timeouts", {})
    return {str(k): int(v) for k, v in table.items()} if isinstance(table, dict) else {}


@rule(
    "KRN011",
    name="keepalive-longer-than-middlebox",
    severity=Severity.INFO,
    summary="tcp_keepalive_time longer than a known middlebox idle timeout",
    needs=("node",),
)
def keepalive_longer_than_middlebox(bag: EvidenceBag) -> Iterator[Finding]:
    snap = snapshot_of(bag)
    keepalive = snap.sysctl_int("net.ipv4.tcp_keepalive_time")
    if keepalive is None:
        return
    # only middleboxes known to be on this node's paths: its own IPVS, and those the user configured
    timeouts = dict(configured_idle_timeouts(bag))
    if snap.net and snap.net.ipvs and snap.net.ipvs.get("tcp"):
        timeouts["kube-proxy IPVS (tcp)"] = snap.net.ipvs["tcp"]
    shorter = {name: t for name, t in sorted(timeouts.items(), key=lambda kv: kv[1]) if t < keepalive}
    if not shorter:
        return
    listed = ", ".join(f"{name} {t} s" for name, t in shorter.items())
    yield keepalive_longer_than_middlebox.finding(
        f"net.ipv4.tcp_keepalive_time is {keepalive} s, longer than {listed}: an idle connection of a client "
        "that relies on the system default (not Go, whose dialer sends keep-alives every 15 s) is "
        "forgotten by such a middlebox and its next packet is dropped or reset",
        subject=node_subject(snap),
        evidence=sysctl_evidence(snap, "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_keepalive_intvl"),
        fix=Fix(
            f"set net.ipv4.tcp_keepalive_time below {min(shorter.values())} s (e.g. 120) for such clients"
        ),
    )


def effective_rp_filter(snap: NodeSnapshot, ifname: str) -> int | None:
    """max(conf.all, conf.<if>): Documentation/networking/ip-sysctl.rst, rp_filter."""
    own = snap.sysctl_int(f"net.ipv4.conf.{ifname}.rp_filter")
    every = snap.sysctl_int("net.ipv4.conf.all.rp_filter")
    values = [v for v in (own, every) if v is not None]
    return max(values) if values else None


@rule(
    "KRN012",
    name="harmful-tcp-settings",
    severity=Severity.WARNING,
    summary="obsolete or harmful settings: tcp_tw_recycle, tcp_timestamps 0 with tcp_tw_reuse, strict rp_filter",
    needs=("node",),
)
def harmful_tcp_settings(bag: EvidenceBag) -> Iterator[Finding]:
    snap = snapshot_of(bag)
    subject = node_subject(snap)
    recycle = snap.sysctl_int("net.ipv4.tcp_tw_recycle")
    if recycle is not None:
        yield harmful_tcp_settings.finding(
            f"net.ipv4.tcp_tw_recycle exists and is {recycle} on kernel {snap.kernel}: it was removed in 4.12 "
            "because it drops SYNs from clients behind NAT (all pods behind one node address)",
            subject=subject,
            severity=Severity.WARNING if recycle else Severity.INFO,
            evidence=sysctl_evidence(snap, "net.ipv4.tcp_tw_recycle"),
            fix=Fix("set net.ipv4.tcp_tw_recycle=0 and remove it from sysctl.conf; upgrade the kernel"),
        )
    timestamps = snap.sysctl_int("net.ipv4.tcp_timestamps")
    reuse = snap.sysctl_int("net.ipv4.tcp_tw_reuse")
    if timestamps == 0 and reuse:
        # tcp_twsk_unique() (net/ipv4/tcp_ipv4.c) reuses a TIME_WAIT port only when the TIME_WAIT
        # socket recorded a timestamp; with tcp_tw_reuse 2 it tries only for loopback ones at all.
        scope = (
            "so outgoing connects never reuse a TIME_WAIT port and wait 60 s for each (KRN004)"
            if reuse == 1
            else "which loses only the loopback-only reuse that tcp_tw_reuse 2 gives (connections to "
            "127.0.0.0/8 or ::1); other destinations never reuse TIME_WAIT ports at this setting anyway"
        )
        yield harmful_tcp_settings.finding(
            f"net.ipv4.tcp_timestamps is 0 while tcp_tw_reuse is {reuse}: TIME_WAIT reuse needs the "
            f"timestamps the connection recorded, {scope}",
            subject=subject,
            severity=Severity.WARNING if reuse == 1 else Severity.INFO,
            evidence=sysctl_evidence(snap, "net.ipv4.tcp_timestamps", "net.ipv4.tcp_tw_reuse"),
            fix=Fix("sysctl -w net.ipv4.tcp_timestamps=1"),
        )
    if snap.net is None:
        return
    overlay = next((lnk.name for lnk in snap.net.links if tunnel_kind(lnk)), None)
    homed = sorted(
        {
            a.ifname
            for a in snap.net.addresses
            if ":" not in a.address and a.ifname != "lo" and not is_cni_device(a.ifname)
        }
    )
    strict = [name for name in homed if effective_rp_filter(snap, name) == 1]
    if overlay and len(homed) >= 2 and strict:
        yield harmful_tcp_settings.finding(
            f"strict rp_filter (1) on {', '.join(strict)} of a node with {len(homed)} addressed interfaces "
            f"({', '.join(homed)}) and overlay {overlay}: replies arriving on another interface than the route "
            "back are dropped silently",
            subject=subject,
            evidence=sysctl_evidence(
                snap, "net.ipv4.conf.all.rp_filter", *(f"net.ipv4.conf.{n}.rp_filter" for n in strict)
            ),
            fix=Fix("use loose mode: sysctl -w net.ipv4.conf.all.rp_filter=2 (and per interface)"),
        )
