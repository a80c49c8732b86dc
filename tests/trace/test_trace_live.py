"""`tcpdoctor trace` on the real kernel (root, bpftrace, tracefs).

bpftrace takes seconds to start on a loaded machine, so one trace session watches every
scenario at once (module fixture); each test then checks its own part of the evidence:

- a connect to a closed port on loopback → reset NO_SOCKET, refused peer = this test's pid
- close() with SO_LINGER {1, 0} → reset with the reason the kernel gives (TCP_STATE on 6.10+)
- a graceful close on another port → no reset there (the non-trigger case)
- iptables DROP in a test namespace → kfree_skb with NETFILTER_DROP
- a backlog-1 listener flooded in the namespace → TRC003 naming it and its pid
- 200 short-lived connections in the namespace → TRC004
- a server (another process) closes while its client keeps sending → TCP_ABORT_ON_DATA,
  sent after tcp_done() destroyed the socket, still names the server's pid; its drop is
  folded into the reset's finding, not a second TRC002 finding
"""

from __future__ import annotations

import os
import random
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tcpdoctor.evidence.trace import TraceEvidence
from tcpdoctor.lab import netns
from tcpdoctor.model import Finding
from tcpdoctor.rules.registry import EvidenceBag, get_rule
from tcpdoctor.sources.ebpf.programs import ProgramSpec
from tcpdoctor.sources.ebpf.runner import TraceSession

pytestmark = [pytest.mark.root, pytest.mark.bpftrace]


def ensure_tracefs() -> None:
    if not Path("/sys/kernel/tracing/events").is_dir():
        subprocess.run(["mount", "-t", "tracefs", "tracefs", "/sys/kernel/tracing"], check=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Scenario:
    closed_port: int = 0
    linger_port: int = 0
    linger_client_port: int = 0
    graceful_port: int = 0
    drop_port: int = 0
    backlog_port: int = 0
    storm_port: int = 0
    abort_port: int = 0
    tw_port: int = 0
    tw_client_port: int = 0
    abort_client_port: int = 0
    abort_server_pid: int = 0
    netns_inode: int = 0
    listener_pid: int = 0
    errors: list[str] = field(default_factory=list)
    evidence: TraceEvidence = field(default_factory=TraceEvidence)
    wall: float = 0.0

    def findings(self, rule_id: str) -> list[Finding]:
        r = get_rule(rule_id)
        assert r is not None
        bag = EvidenceBag()
        bag.add("trace", self.evidence)
        return list(r(bag))


NS_PY = [sys.executable, "-c"]
LISTEN_BACKLOG_1 = (
    "import socket,sys,time\ns=socket.socket();s.bind(('127.0.0.1',int(sys.argv[1])));s.listen(1)\n"
    "print('up',flush=True);time.sleep(60)"
)
ACCEPT_AND_CLOSE = (
    "import socket,sys\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
    "s.bind(('127.0.0.1',int(sys.argv[1])));s.listen(512);print('up',flush=True)\n"
    "while True:\n c,_=s.accept();c.close()"
)
FLOOD = (
    "import socket,sys,time\nss=[]\nfor i in range(20):\n s=socket.socket();s.setblocking(False)\n"
    " try: s.connect(('127.0.0.1',int(sys.argv[1])))\n except BlockingIOError: pass\n ss.append(s)\n"
    "time.sleep(2)"
)
# TCP_LINGER2 above TIME_WAIT's 60 s keeps the closed socket a full, orphaned FIN_WAIT2 socket
# (tcp_close in net/ipv4/tcp.c) instead of a timewait sock: the client's next data then meets
# tcp_rcv_state_process's RCV_SHUTDOWN check -> tcp_reset -> tcp_done (destroy) -> RST.
CLOSE_WHILE_CLIENT_SENDS = (
    "import socket,sys,time\ns=socket.socket();s.bind(('127.0.0.1',int(sys.argv[1])));s.listen(8)\n"
    "print('up',flush=True)\nc,_=s.accept();c.setsockopt(socket.IPPROTO_TCP,socket.TCP_LINGER2,120)\n"
    "s.close();c.recv(4);c.close();time.sleep(5)"
)
STORM = "import socket,sys\nfor i in range(200):\n s=socket.socket();s.connect(('127.0.0.1',int(sys.argv[1])));s.close()"
DROPPED = (
    "import socket,sys\ns=socket.socket();s.settimeout(1.5)\n"
    "try: s.connect(('127.0.0.1',int(sys.argv[1])))\nexcept OSError: pass"
)


def _loopback_scenarios(sc: Scenario) -> None:
    """In this process, on loopback of the host namespace: the owner must be os.getpid()."""
    try:
        with socket.socket() as c:
            c.connect(("127.0.0.1", sc.closed_port))
    except ConnectionRefusedError:
        pass
    else:
        sc.errors.append(f"port {sc.closed_port} was open")
    # default TCP_LINGER2: the closed server socket becomes a timewait sock in the FIN_WAIT2
    # substate; data from the client then gets TCP_TIMEWAIT_SOCKET (tcp_timewait_state_process)
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", sc.tw_port))
        srv.listen(8)
        with socket.create_connection(("127.0.0.1", sc.tw_port)) as c:
            sc.tw_client_port = c.getsockname()[1]
            peer, _ = srv.accept()
            peer.close()
            if c.recv(1) != b"":
                sc.errors.append("the time-wait server did not close")
            time.sleep(0.05)
            c.sendall(b"data for a closed connection")
            time.sleep(0.2)
    with socket.create_connection(("127.0.0.1", sc.abort_port)) as c:
        sc.abort_client_port = c.getsockname()[1]
        c.sendall(b"ping")
        if c.recv(1) != b"":  # the server's FIN
            sc.errors.append("the abort server did not close")
        time.sleep(0.05)
        c.sendall(b"more data after the server closed")
        time.sleep(0.2)
    for port, linger in ((sc.linger_port, True), (sc.graceful_port, False)):
        with socket.socket() as srv:
            srv.bind(("127.0.0.1", port))
            srv.listen(8)
            c = socket.create_connection(("127.0.0.1", port))
            peer, _ = srv.accept()
            if linger:
                sc.linger_client_port = c.getsockname()[1]
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                c.close()
                time.sleep(0.05)
                peer.close()
            else:
                c.sendall(b"ping")
                assert peer.recv(4) == b"ping"
                c.shutdown(socket.SHUT_WR)
                peer.recv(1)
                peer.close()
                c.recv(1)
                c.close()


@pytest.fixture(scope="module")
def live(bpftrace: str) -> Iterator[Scenario]:
    ensure_tracefs()
    sc = Scenario(
        closed_port=free_port(),
        linger_port=free_port(),
        graceful_port=free_port(),
        abort_port=free_port(),
        tw_port=free_port(),
    )
    sc.drop_port, sc.backlog_port, sc.storm_port = random.sample(range(20000, 30000), 3)
    with netns.topology("tdtest-") as topo:
        ns = topo.host("trc")
        sc.netns_inode = os.stat(f"/var/run/netns/{ns.name}").st_ino
        ns.run(["iptables", "-A", "INPUT", "-p", "tcp", "--dport", str(sc.drop_port), "-j", "DROP"])
        listener = ns.popen([*NS_PY, LISTEN_BACKLOG_1, str(sc.backlog_port)], stdout=subprocess.PIPE)
        server = ns.popen([*NS_PY, ACCEPT_AND_CLOSE, str(sc.storm_port)], stdout=subprocess.PIPE)
        for proc in (listener, server):
            assert proc.stdout is not None and proc.stdout.readline().strip() == b"up"
        sc.listener_pid = listener.pid  # `ip netns exec` execs the command: same pid
        ports = (
            sc.closed_port,
            sc.linger_port,
            sc.graceful_port,
            sc.drop_port,
            sc.backlog_port,
            sc.storm_port,
            sc.abort_port,
            sc.tw_port,
        )
        # the namespace this test made is sampled too (by default only our own is)
        session = TraceSession(ProgramSpec(ports=ports), netns_files=(f"/var/run/netns/{ns.name}",))
        stop = threading.Event()
        spawned: list[subprocess.Popen[bytes]] = []

        def scenarios() -> None:
            try:
                if not session.ready.wait(120):
                    sc.errors.append("trace never became ready")
                    return
                clients = [
                    ns.popen([*NS_PY, script, str(port)])
                    for script, port in (
                        (DROPPED, sc.drop_port),
                        (FLOOD, sc.backlog_port),
                        (STORM, sc.storm_port),
                    )
                ]
                # it listens once the probes are live (the kernel records the listener's owner),
                # and closes its listener after accept: no sock_diag sample can name it at the end
                aborter = subprocess.Popen(
                    [*NS_PY, CLOSE_WHILE_CLIENT_SENDS, str(sc.abort_port)], stdout=subprocess.PIPE
                )
                spawned.append(aborter)
                sc.abort_server_pid = aborter.pid
                assert aborter.stdout is not None and aborter.stdout.readline().strip() == b"up"
                _loopback_scenarios(sc)
                for c in clients:
                    if c.wait(timeout=30) != 0:
                        sc.errors.append(f"client {c.args} exited {c.returncode}")
                time.sleep(0.5)
            except Exception as exc:
                sc.errors.append(repr(exc))
            finally:
                stop.set()

        worker = threading.Thread(target=scenarios)
        worker.start()
        started = time.monotonic()
        sc.evidence = session.run(duration=90, stop=stop)
        sc.wall = time.monotonic() - started
        worker.join()
        for proc in spawned:
            proc.kill()
            proc.wait()
    assert not sc.errors, sc.errors
    yield sc


def test_closed_port_reset_no_socket_attributed_to_the_connecting_pid(live: Scenario) -> None:
    resets = [e for e in live.evidence.of_kind("reset_sent") if e.sport == live.closed_port]
    assert len(resets) == 1, live.evidence.of_kind("reset_sent")
    rst = resets[0]
    assert rst.reason == "NO_SOCKET"
    assert not rst.has_socket and rst.owner.pid is None  # no socket: nothing to attribute locally...
    assert rst.peer is not None and rst.peer.pid == os.getpid()  # ...but the refused connection is ours
    failed = [e for e in live.evidence.of_kind("connect") if e.dport == live.closed_port]
    assert failed and failed[0].reason == "failed" and failed[0].owner.pid == os.getpid()
    (finding,) = [f for f in live.findings("TRC001") if "NO_SOCKET" in f.message]
    assert f"refused on 127.0.0.1:{live.closed_port}" in finding.message
    assert f"pid {os.getpid()}" in finding.message


def test_linger_zero_close_reason(live: Scenario) -> None:
    resets = [
        e
        for e in live.evidence.of_kind("reset_sent")
        if e.sport == live.linger_client_port and e.dport == live.linger_port
    ]
    assert len(resets) == 1, live.evidence.of_kind("reset_sent")
    # Linux 6.10+: tcp_disconnect() sends it with SK_RST_REASON_TCP_STATE (measured on 6.18),
    # not TCP_ABORT_ON_LINGER, which is the FIN_WAIT2 linger2 timeout.
    assert resets[0].reason == "TCP_STATE"
    assert resets[0].owner.pid == os.getpid() and resets[0].has_socket
    received = [e for e in live.evidence.of_kind("reset_received") if e.sport == live.linger_port]
    assert (
        received and received[0].owner.pid == os.getpid()
    )  # the accepted side inherits the listener's owner


def test_graceful_close_sends_no_reset(live: Scenario) -> None:
    ports = {live.graceful_port}
    assert not [e for e in live.evidence.events if e.kind.startswith("reset") and ports & {e.sport, e.dport}]
    lifetimes = [e for e in live.evidence.of_kind("lifetime") if ports & {e.sport, e.dport}]
    assert len(lifetimes) == 2  # both sides seen from their own socket, and nothing else happened


def test_iptables_drop_reason(live: Scenario) -> None:
    drops = [e for e in live.evidence.of_kind("drop") if e.dport == live.drop_port]
    assert drops, "no kfree_skb for the dropped SYN"
    assert {e.reason for e in drops} == {"NETFILTER_DROP"}
    assert {e.state for e in drops} == {"SYN"}
    assert {e.netns for e in drops} == {live.netns_inode}
    (finding,) = [f for f in live.findings("TRC002") if str(live.drop_port) in f.message]
    assert "NETFILTER_DROP" in finding.message


def test_backlog_one_listener_overflow(live: Scenario) -> None:
    ns = live.evidence.namespace(live.netns_inode)
    assert ns is not None and ns.delta("ListenOverflows") > 0
    found = [f for f in live.findings("TRC003") if f"127.0.0.1:{live.backlog_port}" in f.message]
    assert len(found) == 1, [f.message for f in live.findings("TRC003")]
    assert f"pid {live.listener_pid} " in found[0].message and "backlog 1" in found[0].message
    host = live.evidence.namespace(os.stat("/proc/self/ns/net").st_ino)
    storm_listener = [ls for ls in live.evidence.listeners if ls.port == live.storm_port]
    assert storm_listener and storm_listener[0].full_samples == 0  # the accepting server is not named
    assert host is None or all(f"127.0.0.1:{live.storm_port}" not in f.message for f in found)


def test_connection_storm_churn(live: Scenario) -> None:
    churn = [f for f in live.findings("TRC004") if f"127.0.0.1:{live.storm_port}" in f.message]
    lifetimes = len(live.evidence.of_kind("lifetime"))
    assert churn, (lifetimes, live.evidence.notes, [f.message for f in live.findings("TRC004")])
    messages = [f.message for f in churn]
    # 200 connections were made on each side. The kernel skips a probe that fires while another
    # BPF program runs on the same CPU (softirq over a probe in process context), which on a busy
    # machine loses a few client-side closes: the evidence says so in its notes.
    client_side = [m for m in messages if re.match(r"(1\d\d|200) connections to ", m)]
    server_side = [m for m in messages if re.match(r"(1\d\d|200) connections accepted on ", m)]
    if not (client_side and client_side[0].startswith("200")):
        assert any("skipped" in n for n in live.evidence.notes), live.evidence.notes
    assert server_side and "accepted by pid" in server_side[0], messages  # owner: the sampled listener
    assert client_side and "were closed first on this side" in client_side[0], messages
    # the graceful and linger pairs are connections too, but far too few to be churn
    assert not [f for f in live.findings("TRC004") if str(live.linger_port) in f.message]


def test_session_cost(live: Scenario) -> None:
    """Start-up plus the scenarios stays bounded (bpftrace attach is the slow part)."""
    assert live.wall < 90


def test_abort_on_data_names_the_closed_server(live: Scenario) -> None:
    """The reset is sent after tcp_done() destroyed the socket: the owner is kept past destroy."""
    resets = [
        e
        for e in live.evidence.of_kind("reset_sent")
        if e.sport == live.abort_port and e.dport == live.abort_client_port
    ]
    assert len(resets) == 1, live.evidence.of_kind("reset_sent")
    assert resets[0].reason == "TCP_ABORT_ON_DATA" and resets[0].syn is False
    assert resets[0].owner.pid == live.abort_server_pid, resets[0].owner
    (finding,) = [f for f in live.findings("TRC001") if "TCP_ABORT_ON_DATA" in f.message]
    assert f"pid {live.abort_server_pid} " in finding.message
    # the kernel also freed the segment with that reason: one finding, not a TRC002 drop too
    drops = [e for e in live.evidence.of_kind("drop") if e.dport == live.abort_port]
    assert {e.reason for e in drops} == {"TCP_ABORT_ON_DATA"}, drops
    assert "1 of them also showed" in finding.message
    assert not [f for f in live.findings("TRC002") if str(live.abort_port) in f.message]


def test_refused_connect_is_one_finding(live: Scenario) -> None:
    """The RST sent (NO_SOCKET), the RST our connect received and the SYN's drop are one event."""
    port = f"127.0.0.1:{live.closed_port}"
    trc001 = [f for f in live.findings("TRC001") if port in f.message]
    assert len(trc001) == 1 and "refused on" in trc001[0].message, [f.message for f in trc001]
    assert not [f for f in live.findings("TRC002") if port in f.message]
    (rst,) = [e for e in live.evidence.of_kind("reset_sent") if e.sport == live.closed_port]
    assert rst.syn is True


def test_timewait_socket_reset_reads_no_cgroup(live: Scenario) -> None:
    """tcp_send_reset on an inet_timewait_sock: sk_cgrp_data lies past that object, so no cgroup
    is read (0), while the netns (in sock_common) is still right."""
    resets = [
        e
        for e in live.evidence.of_kind("reset_sent")
        if e.sport == live.tw_port and e.dport == live.tw_client_port
    ]
    assert len(resets) == 1, live.evidence.of_kind("reset_sent")
    assert resets[0].reason == "TCP_TIMEWAIT_SOCKET" and resets[0].state == "TIME_WAIT"
    assert resets[0].owner.cgroup_id == 0
    assert resets[0].netns == os.stat("/proc/self/ns/net").st_ino
