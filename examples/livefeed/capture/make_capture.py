"""Re-make livefeed.pcap: the real livefeed and ingest servers, real kernel, tcpdump (root only).

    sudo .venv/bin/python examples/livefeed/capture/make_capture.py

Two network namespaces joined by a veth: "node" (10.244.1.1, where the kubelet and a client
run) and "pod" (10.244.1.7, livefeed on :8080 and ingest on :9090, built from this example's
Go code). tcpdump on the pod's interface records:
1. a kubelet-style probe (User-Agent kube-probe/1.31, 1 s timeout, connection closed after)
   to livefeed's GET /events, the SSE stream the manifests use as readiness/liveness path;
2. a keep-alive connection to ingest used once, left idle 63 s (ingest's IdleTimeout is 60 s,
   livefeed's client keeps idle connections 5 minutes), then reused: the request is reset.
"""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

from tcpdoctor.lab import gobuild, netns
from tcpdoctor.lab.capture import Capture

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent
PROBE = "GET /events HTTP/1.1\r\nHost: 10.244.1.7:8080\r\nUser-Agent: kube-probe/1.31\r\nAccept: */*\r\nConnection: close\r\n\r\n"
HEALTH = "GET /healthz HTTP/1.1\r\nHost: ingest.markets.svc:9090\r\nUser-Agent: Go-http-client/1.1\r\n\r\n"

CLIENT = r"""
import socket, sys, time
probe, health = sys.argv[1].encode(), sys.argv[2].encode()
s = socket.create_connection(("10.244.1.7", 8080))
s.sendall(probe)
deadline = time.monotonic() + 1.0
while (left := deadline - time.monotonic()) > 0:
    s.settimeout(left)
    try:
        if not s.recv(4096):
            break
    except OSError:
        break
s.close()
k = socket.create_connection(("10.244.1.7", 9090))
k.sendall(health)
k.recv(4096)
time.sleep(63)
try:
    k.sendall(health)
    time.sleep(0.5)
except OSError:
    pass
k.close()
"""


def main() -> None:
    livefeed = gobuild.build(EXAMPLE, "livefeed")
    ingest = gobuild.build(EXAMPLE / "cmd" / "ingest", "ingest")
    with netns.topology("tdlab-") as topo:
        node, pod = topo.host("node"), topo.host("pod")
        _, pod_if = topo.link(node, "10.244.1.1/24", pod, "10.244.1.7/24")
        pod.popen([str(ingest)])
        pod.popen([str(livefeed), "-listen", ":8080", "-upstream", "127.0.0.1:9090", "-heartbeat", "15s"])
        time.sleep(1.5)
        cap = Capture(pod, pod_if, HERE / "livefeed.pcap", "tcp")
        node.run([sys.executable, "-c", CLIENT, PROBE, HEALTH], timeout=120)
        cap.stop()
    print(HERE / "livefeed.pcap", (HERE / "livefeed.pcap").stat().st_size, "bytes")


if __name__ == "__main__":
    socket.setdefaulttimeout(None)
    main()
