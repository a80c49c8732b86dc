"""Zeek's conn_state from what each side sent (the cases the public captures do not show)."""

from __future__ import annotations

import pytest

from tcpdoctor.sources.pcap.conn_state import Sent, conn_state

NOTHING = Sent(0, False, False, False, False, 0)


def sent(
    *, syn: bool = False, synack: bool = False, fin: bool = False, rst: bool = False, data: int = 0
) -> Sent:
    return Sent(1, syn, synack, fin, rst, data)


@pytest.mark.parametrize(
    ("client", "server", "history", "state"),
    [
        (sent(syn=True), NOTHING, "S", "S0"),
        (sent(syn=True), sent(synack=True), "ShA", "S1"),
        (sent(syn=True, fin=True, data=5), sent(synack=True, fin=True, data=9), "ShADdFf", "SF"),
        (sent(syn=True), sent(rst=True), "Sr", "REJ"),
        (sent(syn=True, fin=True, data=5), sent(synack=True, data=9), "ShADdF", "S2"),
        (sent(syn=True, data=5), sent(synack=True, fin=True, data=9), "ShADdf", "S3"),
        (sent(syn=True, rst=True, data=5), sent(synack=True, data=9), "ShADdR", "RSTO"),
        (sent(syn=True, data=5), sent(synack=True, rst=True, data=9), "ShADdr", "RSTR"),
        (sent(syn=True, rst=True), NOTHING, "SR", "RSTOS0"),
        (NOTHING, sent(synack=True, rst=True), "^hr", "RSTRH"),
        (sent(syn=True, fin=True), NOTHING, "SF", "SH"),
        (NOTHING, sent(synack=True, fin=True), "^hf", "SHR"),
        (sent(data=5), sent(data=9), "Dd", "OTH"),
        (sent(rst=True), NOTHING, "R", "OTH"),  # a RST alone is not RSTOS0: no SYN before it
    ],
)
def test_conn_state(client: Sent, server: Sent, history: str, state: str) -> None:
    assert conn_state(client, server, history) == state
