"""Evidence from a live eBPF trace (``tcpdoctor trace``): kernel events and namespace samples.

Produced by :mod:`tcpdoctor.sources.ebpf` and read by the TRC rules. Socket events carry
the local side in ``saddr``/``sport`` and the peer in ``daddr``/``dport``; drops carry the
packet's own source and destination. The owner is the process that created the socket
(connect or listen, recorded in process context in the kernel), never the task that happened
to run the tracepoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

EventKind = Literal["reset_sent", "reset_received", "drop", "retransmit", "connect", "lifetime"]

KIND_CODES: dict[str, EventKind] = {
    "RS": "reset_sent",
    "RR": "reset_received",
    "DR": "drop",
    "RT": "retransmit",
    "CN": "connect",
    "LT": "lifetime",
}


def endpoint(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


@dataclass
class Attribution:
    """Who a socket belongs to: its owner process, and the cgroup → container → pod it lives in."""

    pid: int | None = None
    comm: str | None = None
    cgroup_id: int = 0
    cgroup_path: str | None = None
    container_id: str | None = None
    runtime: str | None = None  # containerd | cri-o | docker
    pod_uid: str | None = None
    pod_name: str | None = None
    pod_namespace: str | None = None

    def label(self) -> str:
        """ "api-7d9 (pid 1234 app)", "pid 1234 curl" or "unknown"."""
        proc = f"pid {self.pid} {self.comm}" if self.pid else ""
        if self.pod_name:
            pod = f"{self.pod_namespace}/{self.pod_name}" if self.pod_namespace else self.pod_name
            return f"pod {pod} ({proc})" if proc else f"pod {pod}"
        if self.pod_uid:
            return f"pod uid {self.pod_uid}" + (f" ({proc})" if proc else "")
        return proc or "unknown process"

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, 0)}


@dataclass
class TraceEvent:
    kind: EventKind
    time: float  # seconds since the trace started
    saddr: str
    sport: int
    daddr: str
    dport: int
    state: str  # TCP state name (ESTABLISHED, ...), or the TCP flags ("SYN", "RST") of a dropped packet
    reason: str | None = None  # kernel reset / drop reason (NO_SOCKET, NETFILTER_DROP, ...)
    netns: int = 0
    owner: Attribution = field(default_factory=Attribution)
    peer: Attribution | None = None  # NO_SOCKET reset: the local process whose connection was refused
    has_socket: bool = True  # False for a reset sent with no socket (NO_SOCKET)
    syn: bool | None = None  # reset_sent: the segment it answered was a SYN (no ACK); None: unknown
    server_side: bool = False  # lifetime: the socket was accepted from a listener
    micros: int | None = None  # lifetime or connect latency
    length: int | None = None  # IP length of a dropped packet
    task_pid: int = 0  # the task current at the tracepoint: context only, not the owner
    task_comm: str = ""

    @property
    def local(self) -> str:
        return endpoint(self.saddr, self.sport)

    @property
    def remote(self) -> str:
        return endpoint(self.daddr, self.dport)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": self.kind,
            "time": round(self.time, 6),
            "src": self.local,
            "dst": self.remote,
            "state": self.state,
        }
        if self.reason is not None:
            out["reason"] = self.reason
        if self.micros is not None:
            out["micros"] = self.micros
        if self.length is not None:
            out["length"] = self.length
        if self.kind == "reset_sent":
            out["has_socket"] = self.has_socket
            if self.syn is not None:
                out["answers_syn"] = self.syn
        if self.kind == "lifetime":
            out["side"] = "server" if self.server_side else "client"
        out["netns"] = self.netns
        out["owner"] = self.owner.to_dict()
        if self.peer is not None:
            out["peer_owner"] = self.peer.to_dict()
        out["task"] = {"pid": self.task_pid, "comm": self.task_comm}
        return out


@dataclass
class ListenerSample:
    """A listening socket seen by sock_diag during the trace, with the fullest queue observed."""

    netns: int
    address: str
    port: int
    backlog: int  # sk_max_ack_backlog (the listen() backlog, capped by somaxconn)
    max_queue: int  # the longest accept queue sampled
    full_samples: int  # samples where the queue was over the backlog (the kernel's "full" test)
    samples: int
    inode: int = 0
    pid: int | None = None
    comm: str | None = None

    @property
    def endpoint(self) -> str:
        return endpoint(self.address, self.port)


@dataclass
class NamespaceCounters:
    """TcpExt/Tcp counters and sockstat of one network namespace at the start and end of the trace."""

    netns: int
    label: str  # "host" or "netns of pid 1234 (comm)"
    before: dict[str, int] = field(default_factory=dict)
    after: dict[str, int] = field(default_factory=dict)
    tw_before: int = 0
    tw_after: int = 0
    tw_max: int = 0

    def delta(self, name: str) -> int:
        return self.after.get(name, 0) - self.before.get(name, 0)


@dataclass
class TraceEvidence:
    events: list[TraceEvent] = field(default_factory=list)
    duration: float = 0.0
    what: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)
    namespaces: list[NamespaceCounters] = field(default_factory=list)
    listeners: list[ListenerSample] = field(default_factory=list)
    lost_events: int = 0
    missed_runs: int = 0  # probe runs the kernel skipped (BPF recursion protection)

    def of_kind(self, kind: EventKind) -> list[TraceEvent]:
        return [e for e in self.events if e.kind == kind]

    def namespace(self, netns: int) -> NamespaceCounters | None:
        return next((n for n in self.namespaces if n.netns == netns), None)
