"""A path MTU black hole: a 1400-byte hop whose router drops ICMP fragmentation-needed.

client (MTU 1500) — router (client side 1400 | server side 1500) — server. The client
announces MSS 1460, the server sends full 1500-byte packets with DF set, the router cannot
forward them and its ICMP "fragmentation needed" is dropped: the server retransmits the
full-size segments until the client gives up, while small packets pass.
"""

from __future__ import annotations

from tcpdoctor.lab.scenario import LabContext, Scenario


def play(ctx: LabContext) -> None:
    topo = ctx.topo
    client, router, server = topo.host("client"), topo.host("router"), topo.host("server")
    ctx.client_if, router_c = topo.link(client, "10.213.1.1/24", router, "10.213.1.254/24")
    _router_s, ctx.server_if = topo.link(router, "10.213.2.254/24", server, "10.213.2.1/24")
    router.run(["ip", "link", "set", router_c, "mtu", "1400"])
    router.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
    router.run(
        ["iptables", "-A", "OUTPUT", "-p", "icmp", "--icmp-type", "fragmentation-needed", "-j", "DROP"]
    )
    client.run(["ip", "route", "add", "default", "via", "10.213.1.254"])
    server.run(["ip", "route", "add", "default", "via", "10.213.2.254"])
    ctx.start_server(server, "-big-size", "1000000")
    capture = ctx.capture(server, ctx.server_if, "server")
    lines = ctx.run_client(client, "-url", "http://10.213.2.1:8080/big", "-n", "1", "-timeout", "6s")
    ctx.log(f"  client: {' '.join(lines)}")
    capture.stop()
    ctx.tcpdoctor("pcap", ["pcap", str(capture.path)])
    ctx.tcpdoctor("node (router)", ["node"], ns=router)


def router_mtu_seen(ctx: LabContext) -> list[str]:
    """The node audit of the router must show the 1400-byte link next to the 1500-byte one."""
    node = next((a for a in ctx.analyses if a.command == "node (router)"), None)
    if node is None or node.report is None:
        return ["no node audit of the router"]
    text = str(node.report)
    return [] if "1400" in text and "1500" in text else ["the node audit does not show the 1400/1500 MTUs"]


SCENARIO = Scenario(
    name="mtu-blackhole",
    summary="client-router-server, router's client link MTU 1400, ICMP frag-needed dropped: full segments vanish",
    play=play,
    expect=("PCP007",),
    checks=(router_mtu_seen,),
)
