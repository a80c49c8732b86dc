"""The false-positive control: normal keep-alive traffic to a well-configured service."""

from __future__ import annotations

from tcpdoctor.lab.scenario import LabContext, Scenario


def play(ctx: LabContext) -> None:
    client, server = ctx.pair()
    ctx.start_service(server, SCENARIO)  # data/healthy/main.go: the code `scan` reads
    capture = ctx.capture(client, ctx.client_if, "client")
    lines = ctx.run_client(
        client,
        "-url",
        "http://10.213.1.2:8080/orders",
        "-n",
        "20",
        "-interval",
        "50ms",
        "-idle-conn-timeout",
        "60s",
        "-workers",
        "2",
    )
    ctx.log(f"  client: {sum(1 for line in lines if line.startswith('ok'))}/{len(lines)} requests answered")
    capture.stop()
    ctx.tcpdoctor("pcap", ["pcap", str(capture.path)])
    ctx.tcpdoctor("scan", ["scan", str(SCENARIO.data)])
    ctx.tcpdoctor("node (server)", ["node"], ns=server)


SCENARIO = Scenario(
    name="healthy",
    summary="normal keep-alive traffic to a well-configured service: no warning may appear",
    play=play,
    clean_at="warning",
)
