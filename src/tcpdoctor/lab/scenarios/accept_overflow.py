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


def names_the_listener(ctx: LabContext) -> list[str]:
    """TRC003 (it samples the queues during the burst) must name this server's :8080, not another
    namespace's listener; the node audit's second sample comes after the burst has drained."""
    problems = []
    for rule_id in ("TRC003",):
        if rule_id in ctx.unavailable:
            continue
        hits = [f for f in ctx.findings() if f["rule"] == rule_id]
        if hits and not any(":8080" in f["message"] for f in hits):
            problems.append(
                f"{rule_id} does not name the server's listener :8080: {hits[0]['message'][:160]}"
            )
    return problems


SCENARIO = Scenario(
    name="accept-overflow",
    summary="somaxconn 8 and a slow accept loop under a burst of 200 connects: the accept queue overflows",
    play=play,
    expect=("KRN001", "TRC003"),
    checks=(names_the_listener,),
)
