"""What the tracepoints cannot see, sampled per network namespace while the trace runs.

- Accept-queue overflow: a SYN or final ACK arriving at a full accept queue is counted in
  TcpExt ListenOverflows/ListenDrops (net/ipv4/tcp_ipv4.c tcp_v4_syn_recv_sock,
  net/ipv4/tcp_input.c tcp_conn_request) and consumed, not freed through kfree_skb, so the
  drop tracepoint never sees it. The counters of another namespace are read from
  ``/proc/<pid>/net/netstat`` of a process inside it, and the listeners' queues are sampled
  with sock_diag (``idiag_rqueue`` = accept queue, ``idiag_wqueue`` = backlog for a listener,
  net/ipv4/tcp_diag.c) from a thread that has joined the namespace with setns(2).
- TIME_WAIT: inet_sock_set_state never reports it (the socket moves FIN_WAIT2 → CLOSE and a
  separate timewait sock takes over), so ``tw`` of ``/proc/<pid>/net/sockstat`` is sampled.
"""

from __future__ import annotations

import ctypes
import os
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tcpdoctor.evidence.trace import ListenerSample, NamespaceCounters

CLONE_NEWNET = 0x40000000
COUNTERS = (
    ("TcpExt", "ListenOverflows"),
    ("TcpExt", "ListenDrops"),
    ("Tcp", "OutRsts"),
    ("Tcp", "RetransSegs"),
    ("Tcp", "ActiveOpens"),
    ("Tcp", "PassiveOpens"),
)
MAX_NAMESPACES = 256
NAMED_NETNS = Path("/var/run/netns")


def parse_snmp_pairs(text: str) -> dict[str, dict[str, int]]:
    """The header/value line pairs of /proc/net/snmp and /proc/net/netstat."""
    groups: dict[str, dict[str, int]] = {}
    lines = text.splitlines()
    for header, values in zip(lines[::2], lines[1::2], strict=False):
        group, _, names = header.partition(":")
        _, _, numbers = values.partition(":")
        groups.setdefault(group.strip(), {}).update(
            {
                n: int(v)
                for n, v in zip(names.split(), numbers.split(), strict=False)
                if v.lstrip("-").isdigit()
            }
        )
    return groups


def parse_sockstat_tw(text: str) -> int:
    """``tw`` of the ``TCP:`` line of /proc/net/sockstat."""
    for line in text.splitlines():
        if line.startswith("TCP:"):
            fields = line.split()[1:]
            pairs = dict(zip(fields[::2], fields[1::2], strict=False))
            return int(pairs.get("tw", 0))
    return 0


def read_counters(who: int | str) -> tuple[dict[str, int], int]:
    """The COUNTERS and the TIME_WAIT count of the namespace of ``who`` (a pid, or "thread-self")."""
    base = Path("/proc") / str(who) / "net"
    values: dict[str, int] = {}
    for name in ("snmp", "netstat"):
        try:
            groups = parse_snmp_pairs((base / name).read_text())
        except OSError:
            continue
        for group, counter in COUNTERS:
            if counter in groups.get(group, {}):
                values[counter] = groups[group][counter]
    try:
        tw = parse_sockstat_tw((base / "sockstat").read_text())
    except OSError:
        tw = 0
    return values, tw


def netns_inode(pid: int | str) -> int | None:
    return _ns_file_inode(f"/proc/{pid}/ns/net")


def _ns_file_inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def namespaces(pids: Iterable[int] | None = None) -> dict[int, tuple[str, str]]:
    """netns inode → (a file to setns(2) into, a label): every namespace (named ones under
    /var/run/netns included, even with no process inside), or only those of ``pids``."""
    found: dict[int, tuple[str, str]] = {}
    own = netns_inode("self")
    if own is not None and pids is None:
        found[own] = ("/proc/self/ns/net", "host")
    if pids is None:
        try:
            for entry in sorted(os.scandir(NAMED_NETNS), key=lambda e: e.name):
                ino = _ns_file_inode(entry.path)
                if ino is not None and ino not in found:
                    found[ino] = (entry.path, f"netns {entry.name}")
        except OSError:
            pass
    candidates = pids if pids is not None else (int(e.name) for e in os.scandir("/proc") if e.name.isdigit())
    for pid in candidates:
        ino = netns_inode(pid)
        if ino is not None and ino not in found:
            label = "host" if ino == own else f"netns {ino} (pid {pid} {comm_of(pid)})"
            found[ino] = (f"/proc/{pid}/ns/net", label)
    return found


def own_namespace(extra: Iterable[str] = ()) -> dict[int, tuple[str, str]]:
    """The namespace this process runs in (what `tcpdoctor trace` samples by default: the one
    `ip netns exec NAME tcpdoctor trace` or a pod's node agent is in), plus the namespace files
    ``extra`` (``/var/run/netns/NAME``, ``/proc/PID/ns/net``) the user named."""
    names: dict[int, str] = {}
    try:
        for entry in os.scandir(NAMED_NETNS):
            ino = _ns_file_inode(entry.path)
            if ino is not None:
                names.setdefault(ino, f"netns {entry.name}")
    except OSError:
        pass
    host = netns_inode(1)
    found: dict[int, tuple[str, str]] = {}
    for ns_file in ("/proc/self/ns/net", *extra):
        ino = _ns_file_inode(ns_file)
        if ino is not None and ino not in found:
            label = "host" if ino == host else names.get(ino, f"netns {ino}")
            found[ino] = (ns_file, label)
    return found


def comm_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def socket_owners(inodes: set[int]) -> dict[int, tuple[int, str]]:
    """Socket inode → (pid, comm), by reading /proc/<pid>/fd (listeners are few: one pass)."""
    wanted = {f"socket:[{i}]": i for i in inodes if i}
    found: dict[int, tuple[int, str]] = {}
    if not wanted:
        return found
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{entry.name}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                inode = wanted.get(os.readlink(f"/proc/{entry.name}/fd/{fd}"))
            except OSError:
                continue
            if inode is not None and inode not in found:
                found[inode] = (int(entry.name), comm_of(int(entry.name)))
        if len(found) == len(wanted):
            break
    return found


def listening_sockets(ds: Any) -> list[tuple[str, int, int, int, int]]:
    """(address, port, accept queue, backlog, inode) of every TCP listener, through a bound DiagSocket."""
    out = []
    for family in (socket.AF_INET, socket.AF_INET6):
        for msg in ds.get_sock_stats(family=family, states=1 << 10):
            out.append(
                (
                    str(msg["idiag_src"]),
                    int(msg["idiag_sport"]),
                    int(msg["idiag_rqueue"]),
                    int(msg["idiag_wqueue"]),
                    int(msg["idiag_inode"]),
                )
            )
    return out


def _setns(ns_file: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(ns_file, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
    finally:
        os.close(fd)


@dataclass
class _NamespaceSampler:
    netns: int
    ns_file: str
    counters: NamespaceCounters
    listeners: dict[tuple[str, int], ListenerSample]
    ready: threading.Event
    error: str | None = None


class NamespaceWatch:
    """Counters at start and end, and listener queues sampled every ``period`` seconds, per namespace."""

    def __init__(
        self,
        pids: Iterable[int] | None = None,
        period: float | None = None,
        *,
        all_namespaces: bool = False,
        netns_files: Iterable[str] = (),
    ) -> None:
        """The namespaces of ``pids``; else every namespace with ``all_namespaces``; else this
        process's own namespace and ``netns_files``."""
        found = namespaces(pids) if pids is not None or all_namespaces else own_namespace(netns_files)
        self.truncated = len(found) > MAX_NAMESPACES
        own = netns_inode("self")
        self.samplers: list[_NamespaceSampler] = []
        for ino, (ns_file, label) in sorted(found.items(), key=lambda kv: (kv[0] != own, kv[0]))[
            :MAX_NAMESPACES
        ]:
            self.samplers.append(
                _NamespaceSampler(ino, ns_file, NamespaceCounters(ino, label), {}, threading.Event())
            )
        # sample often when few namespaces, less on a busy node (each sample is one netlink dump)
        self.period = period if period is not None else (0.1 if len(self.samplers) <= 8 else 1.0)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start one sampling thread per namespace; returns when every "before" reading is taken."""
        for s in self.samplers:
            t = threading.Thread(target=self._run, args=(s,), daemon=True, name=f"netns-{s.netns}")
            self._threads.append(t)
            t.start()
        for s in self.samplers:
            s.ready.wait(timeout=5)

    def _run(self, s: _NamespaceSampler) -> None:
        from pyroute2 import DiagSocket

        try:
            if s.netns != netns_inode("self"):
                _setns(s.ns_file)  # this OS thread only: /proc/thread-self/net and netlink follow it
            s.counters.before, s.counters.tw_before = read_counters("thread-self")
            s.counters.tw_max = s.counters.tw_before
            s.ready.set()
            with DiagSocket() as ds:
                ds.bind()
                while True:
                    self._sample(s, ds)
                    if self._stop.wait(self.period):
                        break
                self._sample(s, ds)
            s.counters.after, s.counters.tw_after = read_counters("thread-self")
            s.counters.tw_max = max(s.counters.tw_max, s.counters.tw_after)
        except Exception as exc:  # a namespace that vanished or refuses us must not stop the trace
            s.error = str(exc)
        finally:
            s.ready.set()

    def _sample(self, s: _NamespaceSampler, ds: Any) -> None:
        _, tw = read_counters("thread-self")
        s.counters.tw_max = max(s.counters.tw_max, tw)
        for addr, port, queue, backlog, inode in listening_sockets(ds):
            key = (addr, port)
            ls = s.listeners.get(key)
            if ls is None:
                ls = s.listeners[key] = ListenerSample(s.netns, addr, port, backlog, 0, 0, 0, inode)
            ls.samples += 1
            ls.backlog = backlog
            ls.max_queue = max(ls.max_queue, queue)
            if queue > backlog:  # sk_acceptq_is_full(): sk_ack_backlog > sk_max_ack_backlog
                ls.full_samples += 1
                if ls.pid is None and ls.full_samples == 1:
                    # name the owner now: a listener that overflows may be gone when the trace stops
                    owner = socket_owners({inode}).get(inode)
                    if owner is not None:
                        ls.pid, ls.comm = owner

    def stop(self) -> tuple[list[NamespaceCounters], list[ListenerSample], list[str]]:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        notes: list[str] = []
        if self.truncated:
            notes.append(f"only the first {MAX_NAMESPACES} network namespaces were sampled")
        counters: list[NamespaceCounters] = []
        listeners: list[ListenerSample] = []
        for s in self.samplers:
            if not s.counters.after:
                continue  # the namespace went away, or refused us
            counters.append(s.counters)
            listeners.extend(s.listeners.values())
        owners = socket_owners({ls.inode for ls in listeners if ls.pid is None})
        for ls in listeners:
            if ls.pid is None and ls.inode in owners:
                ls.pid, ls.comm = owners[ls.inode]
        return counters, listeners, notes
