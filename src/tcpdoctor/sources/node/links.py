"""Links (kind, MTU, underlay), addresses, routes, neighbour counts and IPVS timeouts, by rtnetlink (pyroute2).

Read-only dumps that an unprivileged user may make too. The underlay of a tunnel is
its ``IFLA_LINK`` / vxlan ``dev``; without one, the device that carries the
default route stands in (the packets leave through it).
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from tcpdoctor.evidence.node import Address, Link, NetState, Route

RT_TYPES = {
    1: "unicast",
    2: "local",
    3: "broadcast",
    4: "anycast",
    5: "multicast",
    6: "blackhole",
    7: "unreachable",
    8: "prohibit",
    9: "throw",
    10: "nat",
}
RT_PROTOS = {1: "redirect", 2: "kernel", 3: "boot", 4: "static", 16: "dhcp", 186: "bgp", 188: "ospf"}


def _kind(msg: Any) -> tuple[str, Any]:
    info = msg.get_attr("IFLA_LINKINFO")
    if info is None:
        return "", None
    return info.get_attr("IFLA_INFO_KIND") or "", info.get_attr("IFLA_INFO_DATA")


def _links(ipr: Any) -> list[Link]:
    raw = list(ipr.get_links())
    names = {m["index"]: m.get_attr("IFLA_IFNAME") for m in raw}
    links: list[Link] = []
    for m in raw:
        kind, data = _kind(m)
        parent_index = m.get_attr("IFLA_LINK")
        if kind == "vxlan" and data is not None:
            parent_index = data.get_attr("IFLA_VXLAN_LINK") or parent_index
        other_netns = m.get_attr("IFLA_LINK_NETNSID") is not None
        parent = names.get(parent_index) if parent_index and not other_netns else None
        if parent == names.get(m["index"]):
            parent = None
        master = m.get_attr("IFLA_MASTER")
        links.append(
            Link(
                index=m["index"],
                name=m.get_attr("IFLA_IFNAME"),
                kind=kind,
                mtu=m.get_attr("IFLA_MTU") or 0,
                up=bool(m["flags"] & 1),
                parent=parent,
                master=names.get(master) if master else None,
                peer_in_other_netns=other_netns,
            )
        )
    return links


def _addresses(ipr: Any, names: dict[int, str]) -> list[Address]:
    out = []
    for m in ipr.get_addr():
        addr = m.get_attr("IFA_LOCAL") or m.get_attr("IFA_ADDRESS")
        if addr:
            out.append(
                Address(ifname=names.get(m["index"], str(m["index"])), address=addr, prefixlen=m["prefixlen"])
            )
    return out


def _routes(ipr: Any, names: dict[int, str]) -> list[Route]:
    out = []
    for family in (socket.AF_INET, socket.AF_INET6):
        for m in ipr.get_routes(family=family):
            dst = m.get_attr("RTA_DST") or ("0.0.0.0" if family == socket.AF_INET else "::")
            oif = m.get_attr("RTA_OIF")
            metrics = m.get_attr("RTA_METRICS")
            table = m.get_attr("RTA_TABLE") or m["table"]
            out.append(
                Route(
                    dst=f"{dst}/{m['dst_len']}",
                    dev=names.get(oif) if oif else None,
                    gateway=m.get_attr("RTA_GATEWAY"),
                    table=table,
                    type=RT_TYPES.get(m["type"], str(m["type"])),
                    protocol=RT_PROTOS.get(m["proto"], str(m["proto"])),
                    mtu=(metrics.get_attr("RTAX_MTU") if metrics is not None else None) or None,
                )
            )
    return out


def _neighbours(ipr: Any) -> dict[str, int]:
    counts = {"ipv4": 0, "ipv6": 0}
    for m in ipr.get_neighbours():
        counts["ipv4" if m["family"] == socket.AF_INET else "ipv6"] += 1
    return counts


def _ipvs(skipped: dict[str, str], proc_file: Path = Path("/proc/net/ip_vs")) -> dict[str, int] | None:
    """IPVS timeouts when the module is loaded: generic netlink family "IPVS", IPVS_CMD_GET_CONFIG.

    include/uapi/linux/ip_vs.h: IPVS_CMD_GET_CONFIG = 13 answers IPVS_CMD_ATTR_TIMEOUT_TCP (4),
    _TCP_FIN (5) and _UDP (6), in seconds (what `ipvsadm -L --timeout` prints).
    """
    if not proc_file.exists():
        return None
    try:
        from pyroute2.netlink import NLM_F_REQUEST, genlmsg
        from pyroute2.netlink.generic import GenericNetlinkSocket

        class ipvs_config(genlmsg):
            nla_map = (
                ("IPVS_CMD_ATTR_UNSPEC", "none"),
                ("IPVS_CMD_ATTR_SERVICE", "hex"),
                ("IPVS_CMD_ATTR_DEST", "hex"),
                ("IPVS_CMD_ATTR_DAEMON", "hex"),
                ("IPVS_CMD_ATTR_TIMEOUT_TCP", "uint32"),
                ("IPVS_CMD_ATTR_TIMEOUT_TCP_FIN", "uint32"),
                ("IPVS_CMD_ATTR_TIMEOUT_UDP", "uint32"),
            )

        sock = GenericNetlinkSocket()
        try:
            sock.bind("IPVS", ipvs_config)
            msg = ipvs_config()
            msg["cmd"] = 13
            msg["version"] = 1
            (reply, *_) = sock.nlm_request(msg, msg_type=sock.prid, msg_flags=NLM_F_REQUEST)
        finally:
            sock.close()
        return {
            "tcp": reply.get_attr("IPVS_CMD_ATTR_TIMEOUT_TCP") or 0,
            "tcpfin": reply.get_attr("IPVS_CMD_ATTR_TIMEOUT_TCP_FIN") or 0,
            "udp": reply.get_attr("IPVS_CMD_ATTR_TIMEOUT_UDP") or 0,
        }
    except Exception as exc:  # an optional extra: say why and go on
        skipped["ipvs timeouts"] = f"IPVS is loaded but its timeouts could not be read: {exc}"
        return None


def collect(skipped: dict[str, str]) -> NetState | None:
    from pyroute2 import IPRoute

    state = NetState()
    try:
        with IPRoute() as ipr:
            state.links = _links(ipr)
            names = {lnk.index: lnk.name for lnk in state.links}
            for part, read in (
                ("addresses", lambda: _addresses(ipr, names)),
                ("routes", lambda: _routes(ipr, names)),
                ("neighbours", lambda: _neighbours(ipr)),
            ):
                try:
                    setattr(state, part, read())
                except Exception as exc:
                    skipped[part] = f"rtnetlink dump failed: {exc}"
    except Exception as exc:
        skipped["links"] = f"rtnetlink dump failed: {exc}"
        return None
    state.ipvs = _ipvs(skipped)
    return state
