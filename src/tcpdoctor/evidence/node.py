"""Evidence read from a Linux node: sysctls, counters, the socket census, links, routes.

Plain records produced by the collectors of ``tcpdoctor.sources.node`` and read by
the KRN rules and XL010. A :class:`NodeSnapshot` is also the versioned JSON file
of ``tcpdoctor node --snapshot-out`` / ``--from``: everything a rule reads is in
it, so a snapshot audited on a laptop gives the findings the node gave.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Union

SNAPSHOT_SCHEMA = "tcpdoctor/node-snapshot/v1"


@dataclass
class Listener:
    """A listening TCP socket: Recv-Q is the accept queue, Send-Q the backlog (as `ss -lnt` shows)."""

    local: str  # "0.0.0.0:8080" / "[::]:8080"
    port: int
    queued: int
    backlog: int
    inode: int = 0
    pid: int | None = None
    process: str | None = None

    @property
    def saturated(self) -> bool:
        """Full the way the kernel judges it: sk_acceptq_is_full() (include/net/sock.h) is
        ``sk_ack_backlog > sk_max_ack_backlog``, so a queue holding exactly its backlog still
        takes one more connection (listen(fd, 1) holds 2) and only one above it drops the
        next SYN / final ACK. The kernel's comment there says it is ``>`` on purpose (commit
        64a146513f8f "Revert incorrect accept queue backlog changes")."""
        return self.queued > self.backlog

    def owner(self, all_searched: bool = False) -> str:
        """Who holds it; ``all_searched``: every /proc/<pid>/fd was readable and none had it."""
        if self.pid is None:
            return "no process of this PID namespace holds it" if all_searched else "owner not visible"
        return f"pid {self.pid} ({self.process or '?'})"


@dataclass
class PeerCount:
    """Outgoing sockets of this node from one local address towards one remote address and port.

    Only the client side is counted: sockets whose local port is in ip_local_port_range and
    is not a listening port (a server's accepted and TIME_WAIT sockets hold no ephemeral port).
    """

    remote: str  # "10.0.0.2:8080"
    time_wait: int = 0
    established: int = 0
    local: str = ""  # the source address, "10.0.0.1" ("" in snapshots from before it was recorded)

    @property
    def total(self) -> int:
        return self.time_wait + self.established


@dataclass
class SocketCensus:
    total: int = 0
    states: dict[str, int] = field(default_factory=dict)
    listeners: list[Listener] = field(default_factory=list)
    peers: list[PeerCount] = field(default_factory=list)  # the busiest outgoing destinations, most first
    owners_visible: bool = True
    seconds: float = 0.0  # how long the census took


@dataclass
class Link:
    index: int
    name: str
    kind: str  # "veth", "vxlan", "bridge", ... or "" for a physical / plain device
    mtu: int
    up: bool = True
    parent: str | None = None  # IFLA_LINK / the vxlan's `dev`: the device the tunnel rides on
    master: str | None = None
    peer_in_other_netns: bool = False


@dataclass
class Address:
    ifname: str
    address: str
    prefixlen: int

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network(f"{self.address}/{self.prefixlen}", strict=False)


@dataclass
class Route:
    dst: str  # CIDR, "0.0.0.0/0" for the default route
    dev: str | None = None
    gateway: str | None = None
    table: int = 254
    type: str = "unicast"
    protocol: str = ""
    mtu: int | None = None  # RTAX_MTU: a per-route MTU (`ip route ... mtu 1450`)

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network(self.dst, strict=False)


@dataclass
class NetState:
    links: list[Link] = field(default_factory=list)
    addresses: list[Address] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    neighbours: dict[str, int] = field(default_factory=dict)  # "ipv4" / "ipv6" -> entries
    ipvs: dict[str, int] | None = None  # IPVS timeouts (tcp, tcpfin, udp) when the module is present

    def link(self, name: str | None) -> Link | None:
        return next((lnk for lnk in self.links if lnk.name == name), None)


@dataclass
class Counters:
    """One sample of the cumulative counters."""

    taken_at: float = 0.0  # time.time() of the sample
    snmp: dict[str, dict[str, int]] = field(default_factory=dict)  # "Tcp", "TcpExt", "IpExt", ...
    conntrack: dict[str, int] | None = None  # /proc/net/stat/nf_conntrack summed over CPUs
    softnet: list[dict[str, int]] = field(default_factory=list)  # /proc/net/softnet_stat, one per CPU

    def value(self, group: str, name: str) -> int | None:
        return self.snmp.get(group, {}).get(name)

    def softnet_total(self, column: str) -> int:
        return sum(cpu.get(column, 0) for cpu in self.softnet)


@dataclass
class NodeSnapshot:
    schema: str = SNAPSHOT_SCHEMA
    hostname: str = ""
    kernel: str = ""
    taken_at: str = ""  # ISO 8601, UTC
    netns: str = ""  # e.g. "net:[4026531840]"
    privileged: bool = False
    sysctls: dict[str, str] = field(default_factory=dict)
    counters: Counters = field(default_factory=Counters)
    baseline: Counters | None = None  # the first sample with --interval
    sockets: SocketCensus | None = None
    net: NetState | None = None
    skipped: dict[str, str] = field(default_factory=dict)  # what could not be read, and why
    service_cidrs: list[str] = field(default_factory=list)
    pod_cidrs: list[str] = field(default_factory=list)

    # --- reading -----------------------------------------------------------------------
    def sysctl(self, name: str) -> str | None:
        return self.sysctls.get(name)

    def sysctl_int(self, name: str) -> int | None:
        value = self.sysctls.get(name)
        if value is None:
            return None
        try:
            return int(value.split()[0])
        except (ValueError, IndexError):
            return None

    @property
    def interval(self) -> float | None:
        if self.baseline is None:
            return None
        return max(self.counters.taken_at - self.baseline.taken_at, 1e-6)

    def growth(self, group: str, name: str) -> tuple[int, float | None] | None:
        """(increase, seconds) between the two samples, or (value since boot, None) with one sample."""
        now = self.counters.value(group, name)
        if now is None:
            return None
        if self.baseline is None:
            return now, None
        before = self.baseline.value(group, name)
        return (now - before if before is not None else now), self.interval

    def conntrack_growth(self, name: str) -> tuple[int, float | None] | None:
        now = (self.counters.conntrack or {}).get(name)
        if now is None:
            return None
        if self.baseline is None or self.baseline.conntrack is None:
            return now, None
        return now - self.baseline.conntrack.get(name, 0), self.interval

    def softnet_growth(self, column: str) -> tuple[int, float | None]:
        now = self.counters.softnet_total(column)
        if self.baseline is None:
            return now, None
        return now - self.baseline.softnet_total(column), self.interval

    # --- JSON ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NodeSnapshot:
        """Rebuild a snapshot; raises ValueError (with the field) when the data does not fit."""
        schema = data.get("schema")
        if schema != SNAPSHOT_SCHEMA:
            raise ValueError(f"schema {schema!r} is not {SNAPSHOT_SCHEMA!r}")
        built = _build(cls, data, "snapshot")
        assert isinstance(built, NodeSnapshot)
        return built


def describe_growth(value: tuple[int, float | None] | None, unit: str = "") -> str:
    """ "+312/s (+3120 in 10.0 s)" with two samples, "4711 since boot" with one."""
    if value is None:
        return "n/a"
    amount, seconds = value
    if seconds is None:
        return f"{amount}{unit} since boot"
    return f"+{amount / seconds:.4g}/s (+{amount}{unit} in {seconds:.1f} s)"


def _build(tp: Any, value: Any, where: str) -> Any:
    """Build a value of type ``tp`` (a dataclass, list, dict, optional or scalar) from JSON data."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _build(args[0], value, where)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected an object")
        hints = typing.get_type_hints(tp)
        kwargs = {}
        for f in dataclasses.fields(tp):
            if f.name in value:
                kwargs[f.name] = _build(hints[f.name], value[f.name], f"{where}.{f.name}")
        return tp(**kwargs)
    if origin is list:
        if not isinstance(value, list):
            raise ValueError(f"{where}: expected a list")
        (item,) = typing.get_args(tp)
        return [_build(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected an object")
        _, item = typing.get_args(tp)
        return {str(k): _build(item, v, f"{where}.{k}") for k, v in value.items()}
    if tp is float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ValueError(f"{where}: expected a number")
        return float(value)
    if tp in (int, str, bool):
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            raise ValueError(f"{where}: expected {tp.__name__}")
        return value
    return value
