"""Namespace sampling (TRC003's evidence): only our own namespace unless told, and the owner of
an overflowing listener named while it overflows (root, a test namespace; no bpftrace)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time

import pytest

from tcpdoctor.lab import netns
from tcpdoctor.sources.ebpf.sampling import NamespaceWatch

pytestmark = [pytest.mark.root]

LISTEN_BACKLOG_1 = (
    "import socket,sys,time\ns=socket.socket();s.bind(('127.0.0.1',int(sys.argv[1])));s.listen(1)\n"
    "print('up',flush=True);time.sleep(30)"
)


def test_only_own_namespace_by_default(topo: netns.Topology) -> None:
    ns = topo.host("smp")
    other = os.stat(f"/var/run/netns/{ns.name}").st_ino
    own = os.stat("/proc/self/ns/net").st_ino
    assert [s.netns for s in NamespaceWatch().samplers] == [own]
    named = NamespaceWatch(netns_files=[f"/var/run/netns/{ns.name}"])
    assert {s.netns for s in named.samplers} == {own, other}
    (label,) = [s.counters.label for s in named.samplers if s.netns == other]
    assert label == f"netns {ns.name}"
    assert other in {s.netns for s in NamespaceWatch(all_namespaces=True).samplers}


def test_overflowing_listener_named_while_it_overflows(topo: netns.Topology) -> None:
    """The listener's process is gone when the watch stops: its owner was looked up when the
    queue was first seen over the backlog."""
    ns = topo.host("ovf")
    port = random.randrange(20000, 30000)
    watch = NamespaceWatch(netns_files=[f"/var/run/netns/{ns.name}"], period=0.05)
    watch.start()
    listener = ns.popen([sys.executable, "-c", LISTEN_BACKLOG_1, str(port)], stdout=subprocess.PIPE)
    try:
        assert listener.stdout is not None and listener.stdout.readline().strip() == b"up"
        flood = ns.popen(
            [
                sys.executable,
                "-c",
                "import socket,sys,time\nss=[]\nfor i in range(6):\n s=socket.socket();s.setblocking(False)\n"
                " try: s.connect(('127.0.0.1',int(sys.argv[1])))\n except BlockingIOError: pass\n"
                " ss.append(s)\ntime.sleep(1)",
                str(port),
            ]
        )
        flood.wait(timeout=20)
        time.sleep(0.3)
    finally:
        listener.kill()
        listener.wait()
    time.sleep(0.2)
    counters, listeners, _ = watch.stop()
    (ls,) = [ls for ls in listeners if ls.port == port]
    assert ls.full_samples > 0 and ls.backlog == 1
    assert ls.pid == listener.pid
    (mine,) = [c for c in counters if c.label == f"netns {ns.name}"]
    assert mine.delta("ListenOverflows") > 0
