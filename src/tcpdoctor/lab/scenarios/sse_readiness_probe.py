"""A readiness probe aimed at a Server-Sent Events endpoint.

The kubelet's request (tcpdoctor's faithful emulation: kube-probe User-Agent, 1 s timeout,
fresh connection) goes to /events, which answers 200 text/event-stream and never ends.
"""

from __future__ import annotations

from tcpdoctor.lab.scenario import LabContext, Scenario


def play(ctx: LabContext) -> None:
    client, server = ctx.pair()
    ctx.start_service(server, SCENARIO)  # data/sse-readiness-probe/main.go: the SSE handler
    capture = ctx.capture(client, ctx.client_if, "client")
    ctx.tcpdoctor(
        "probe", ["probe", "http://10.213.1.2:8080/events", "--period", "1", "--count", "2"], ns=client
    )
    capture.stop()
    ctx.tcpdoctor("pcap", ["pcap", str(capture.path)])
    ctx.tcpdoctor("scan", ["scan", str(SCENARIO.data)])


SCENARIO = Scenario(
    name="sse-readiness-probe",
    summary="the kubelet's readiness probe (1 s timeout) hits an SSE endpoint that never ends its answer",
    play=play,
    expect=("XL001", "PCP012", "PRO002"),
)
