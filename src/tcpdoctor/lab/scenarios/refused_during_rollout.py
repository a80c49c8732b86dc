"""A rollout without a preStop delay: the server stops listening at SIGTERM, clients still come."""

from __future__ import annotations

import signal
import time

from tcpdoctor.lab.scenario import LabContext, Scenario


def play(ctx: LabContext) -> None:
    client, server = ctx.pair()
    proc = ctx.start_service(server, SCENARIO)  # data/refused-during-rollout/main.go
    capture = ctx.capture(client, ctx.client_if, "client")
    load = client.popen(
        [
            str(ctx.binary("client")),
            "-url",
            "http://10.213.1.2:8080/checkout",
            "-n",
            "40",
            "-interval",
            "50ms",
            "-no-keepalive",
            "-timeout",
            "1s",
        ]
    )
    time.sleep(0.8)
    ctx.log("  SIGTERM to the server while the endpoint still receives traffic")
    proc.send_signal(signal.SIGTERM)
    load.wait(timeout=30)
    capture.stop()
    ctx.tcpdoctor("pcap", ["pcap", str(capture.path)])
    ctx.tcpdoctor("scan", ["scan", str(SCENARIO.data)])


SCENARIO = Scenario(
    name="refused-during-rollout",
    summary="the server stops listening on SIGTERM with no preStop delay while a client keeps connecting",
    play=play,
    # PRB015 (no preStop, from the manifest alone) is superseded by XL005, which also read the Go code
    expect=("PCP001", "XL005"),
)
