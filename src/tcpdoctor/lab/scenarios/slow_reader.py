"""A client that stops reading a large answer: its receive window closes (zero window)."""

from __future__ import annotations

from tcpdoctor.lab.scenario import LabContext, Scenario


def play(ctx: LabContext) -> None:
    client, server = ctx.pair()
    ctx.start_server(server, "-big-size", "8000000")
    capture = ctx.capture(client, ctx.client_if, "client")
    ctx.run_client(client, "-url", "http://10.213.1.2:8080/big", "-no-read", "3s")
    capture.stop()
    ctx.tcpdoctor("pcap", ["pcap", str(capture.path)])


SCENARIO = Scenario(
    name="slow-reader",
    summary="a client requests 8 MB and does not read for 3 s: the server stalls on a zero window",
    play=play,
    expect=("PCP008",),
    forbid=("PCP007",),  # the stalled segments are window-limited, not lost on the path
)
