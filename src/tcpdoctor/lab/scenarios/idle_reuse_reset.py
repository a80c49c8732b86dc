"""A pooled keep-alive connection reused after the server closed it: the request gets a RST.

The server (IdleTimeout 2 s) closes idle connections, but its FIN never reaches the client:
iptables in the server's namespace drops it, as a load balancer or NAT that silently
expired the connection would. The Go client (IdleConnTimeout 90 s) reuses the pooled
connection 3 s later; the server's kernel answers the request with a RST.
"""

from __future__ import annotations

from tcpdoctor.lab.scenario import LabContext, Scenario

DROP_FIN = [
    "iptables",
    "-A",
    "OUTPUT",
    "-p",
    "tcp",
    "--sport",
    "8080",
    "--tcp-flags",
    "FIN",
    "FIN",
    "-j",
    "DROP",
]


def play(ctx: LabContext) -> None:
    client, server = ctx.pair()
    ctx.start_service(server, SCENARIO)  # data/idle-reuse-reset/main.go: IdleTimeout 2 s
    server.run(DROP_FIN)
    capture = ctx.capture(client, ctx.client_if, "client")
    lines = ctx.run_client(
        client,
        "-url",
        "http://10.213.1.2:8080/stock",
        "-method",
        "POST",
        "-n",
        "3",
        "-interval",
        "3s",
        "-idle-conn-timeout",
        "90s",
    )
    resets = [line for line in lines if "reset" in line]
    ctx.log(f"  client: {len(resets)} of {len(lines)} POSTs failed with a reset")
    capture.stop()
    ctx.tcpdoctor("pcap", ["pcap", str(capture.path)])
    ctx.tcpdoctor("scan --pcap", ["scan", str(SCENARIO.data), "--pcap", str(capture.path)])


SCENARIO = Scenario(
    name="idle-reuse-reset",
    summary="server IdleTimeout 2 s, client IdleConnTimeout 90 s, requests 3 s apart: reuse of a dead connection",
    play=play,
    expect=("PCP003", "XL006", "XL008"),
)
