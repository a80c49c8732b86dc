"""SYNs dropped by a firewall, then the drop lifted while the client is still retrying."""

from __future__ import annotations

import threading
import time

from tcpdoctor.lab.scenario import LabContext, Scenario

RULE = ["INPUT", "-p", "tcp", "--dport", "8080", "--syn", "-j", "DROP"]


def play(ctx: LabContext) -> None:
    client, server = ctx.pair()
    ctx.start_server(server)
    server.run(["iptables", "-A", *RULE])
    capture = ctx.capture(client, ctx.client_if, "client")
    ctx.log("  SYNs to :8080 dropped by iptables; one client gives up after 3 s")
    ctx.run_client(
        client, "-url", "http://10.213.1.2:8080/work", "-n", "1", "-connect-only", "-timeout", "3s"
    )

    def lift() -> None:
        time.sleep(1.5)
        server.run(["iptables", "-D", *RULE])

    lifter = threading.Thread(target=lift)
    lifter.start()
    ctx.log("  a second client connects; the drop is lifted 1.5 s later, during its SYN retries")
    lines = ctx.run_client(
        client, "-url", "http://10.213.1.2:8080/work", "-n", "1", "-connect-only", "-timeout", "10s"
    )
    lifter.join()
    ctx.log(f"  second client: {' '.join(lines)}")
    capture.stop()
    ctx.tcpdoctor("pcap", ["pcap", str(capture.path)])


SCENARIO = Scenario(
    name="syn-drop",
    summary="SYNs dropped by iptables (PCP002), then a connect that succeeds after SYN retransmissions (PCP013)",
    play=play,
    expect=("PCP002", "PCP013"),
)
