"""Zeek's conn_state for a finished TCP connection, from what each side sent.

Each side's endpoint state is derived as Zeek's TCP analyzer names them (docs/pcap.md):
RESET (it sent a RST), CLOSED (it sent a FIN), ESTABLISHED (its SYN / SYN-ACK was
answered by the peer's), SYN_SENT (client: SYN, no SYN-ACK seen), SYN_ACK_SENT (server:
SYN-ACK, no SYN seen), PARTIAL (packets but no SYN of its own), INACTIVE (nothing).
:func:`conn_state` then follows ``conn_state()`` of Zeek's base/protocols/conn/main.zeek.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

INACTIVE = "INACTIVE"
SYN_SENT = "SYN_SENT"
SYN_ACK_SENT = "SYN_ACK_SENT"
PARTIAL = "PARTIAL"
ESTABLISHED = "ESTABLISHED"
CLOSED = "CLOSED"
RESET = "RESET"

_RSTOS0 = re.compile(r"^\^?S[^HAFGIQ]*R")


@dataclass(frozen=True, slots=True)
class Sent:
    """What one side sent over the connection's life."""

    packets: int
    syn: bool  # a SYN without ACK
    synack: bool  # a SYN with ACK
    fin: bool
    rst: bool
    bytes: int


def endpoint_state(me: Sent, peer: Sent, *, client: bool) -> str:
    if me.rst:
        return RESET
    if me.fin:
        return CLOSED
    if client and me.syn:
        return ESTABLISHED if peer.synack else SYN_SENT
    if not client and me.synack:
        return ESTABLISHED if peer.syn else SYN_ACK_SENT
    if me.packets:
        return PARTIAL
    return INACTIVE


def conn_state(client: Sent, server: Sent, history: str) -> str:
    """One of S0 S1 SF REJ S2 S3 RSTO RSTR RSTOS0 RSTRH SH SHR OTH."""
    os_ = endpoint_state(client, server, client=True)
    rs = endpoint_state(server, client, client=False)
    o_inactive = os_ in (INACTIVE, PARTIAL)
    r_inactive = rs in (INACTIVE, PARTIAL)
    if rs == RESET:
        if os_ in (SYN_SENT, SYN_ACK_SENT) or (os_ == RESET and client.bytes == 0 and server.bytes == 0):
            return "REJ"
        return "RSTRH" if o_inactive else "RSTR"
    if os_ == RESET:
        if r_inactive:
            return "RSTOS0" if _RSTOS0.match(history) else "OTH"
        return "RSTO"
    if rs == CLOSED and os_ == CLOSED:
        return "SF"
    if os_ == CLOSED:
        return "SH" if r_inactive else "S2"
    if rs == CLOSED:
        return "SHR" if o_inactive else "S3"
    if os_ == SYN_SENT and rs == INACTIVE:
        return "S0"
    if os_ == ESTABLISHED and rs == ESTABLISHED:
        return "S1"
    return "OTH"
