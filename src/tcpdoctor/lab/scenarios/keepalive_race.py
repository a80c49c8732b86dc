"""Requests spaced right at the server's idle timeout: the server's FIN crosses a new request.

The path has a 20 ms one-way delay (a user-space delay line: this kernel has no netem).
The server closes connections idle for 1 s; the client pauses 980 ms after each answer.
Its next request leaves 20 ms before the server's FIN arrives and reaches the server
20 ms after the server closed: the FIN and the request cross on the wire, and the server
answers the request with a RST. Go retries the idempotent GET on a new connection.
"""

from __future__ import annotations

from tcpdoctor.lab.scenario import LabContext, Scenario


def play(ctx: LabContext) -> None:
    client, server = ctx.delayed_pair(delay_ms=20)
    ctx.start_server(server, "-idle-timeout", "1s")
    capture = ctx.capture(client, ctx.client_if, "client")
    flags = ["-url", "http://10.213.1.2:8080/work", "-n", "4", "-workers", "4", "-interval", "980ms"]
    lines = ctx.run_client(client, *flags, "-idle-conn-timeout", "90s", timeout=60)
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
