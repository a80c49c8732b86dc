"""A server that accepts too slowly under a connection burst: its accept queue overflows.

The server's namespace has net.core.somaxconn 8 (Go's listen backlog follows it) and the
server sleeps 100 ms before each accept; 200 clients connect at once.
"""

from __future__ import annotations

import shutil
import time

from tcpdoctor.lab.scenario import LabContext, Scenario


def play(ctx: LabContext) -> None:
    client, server = ctx.pair()
    server.run(["sysctl", "-qw", "net.core.somaxconn=8"])
    ctx.start_server(server, "-accept-delay", "100ms")
    node = ctx.tcpdoctor_background("node (server)", ["node", "--interval", "4"], ns=server)
    trace = None
    if shutil.which("bpftrace"):
        trace = ctx.tcpdoctor_background(
            "trace (server)", ["trace", "--what", "overflow", "--duration", "6"], ns=server, tracefs=True
        )
    else:
        ctx.skipped.append("trace: bpftrace is not installed")
        ctx.unavailable.add("TRC003")
    time.sleep(1.0)
    lines = ctx.run_client(
        client,
        "-url",
        "http://10.213.1.2:8080/work",
        "-n",
        "1",
        "-workers",
        "200",
        "-connect-only",
        "-timeout",
        "3s",
    )
    ctx.log(
        f"  burst: {sum(1 for line in lines if line.startswith('ok'))} of {len(lines)} connects succeeded"
    )
    node.wait()
    if trace is not None:
        trace.wait()


SCENARIO = Scenario(
    name="accept-overflow",
    summary="somaxconn 8 and a slow accept loop under a burst of 200 connects: the accept queue overflows",
    play=play,
    expect=("KRN001", "TRC003"),
)
