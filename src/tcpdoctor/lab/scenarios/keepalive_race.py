"""Requests spaced right at the server's idle timeout: the server's FIN crosses a new request.

Forty keep-alive clients pause between 995 ms and 1005 ms after each answer while the
server closes connections idle for 1 s; some requests leave the client just as the
server's FIN does.
"""

from __future__ import annotations

from tcpdoctor.lab.scenario import LabContext, Scenario


def play(ctx: LabContext) -> None:
    client, server = ctx.pair()
    ctx.start_server(server, "-idle-timeout", "1s")
    capture = ctx.capture(client, ctx.client_if, "client")
    lines = ctx.run_client(
        client,
        "-url",
        "http://10.213.1.2:8080/work",
        "-method",
        "POST",
        "-n",
        "6",
        "-workers",
        "40",
        "-interval",
        "995ms",
        "-jitter",
        "10ms",
        "-idle-conn-timeout",
        "90s",
        timeout=60,
    )
    failed = [line for line in lines if line.startswith("err")]
    ctx.log(f"  client: {len(failed)} of {len(lines)} requests failed")
    capture.stop()
    ctx.tcpdoctor("pcap", ["pcap", str(capture.path)])


SCENARIO = Scenario(
    name="keepalive-race",
    summary="requests spaced near the server's 1 s idle timeout: its FIN crosses new requests",
    play=play,
    expect=("PCP004",),
)
