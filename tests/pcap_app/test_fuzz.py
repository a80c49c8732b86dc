"""Garbage and truncated streams never raise: a parser stops with an error and keeps what it read."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tcpdoctor.sources.pcap.app import AppSession
from tcpdoctor.sources.pcap.http2 import PREFACE

STARTS = [
    b"GET / HTTP/1.1\r\n",
    PREFACE,
    b"\x16\x03\x01",
    b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
]


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(STARTS),
    st.lists(st.tuples(st.booleans(), st.binary(max_size=300)), max_size=12),
)
def test_any_bytes_after_a_plausible_start(start: bytes, chunks: list[tuple[bool, bytes]]) -> None:
    s = AppSession()
    s.client_data(start, 1, 0.0)
    for i, (client, data) in enumerate(chunks, start=2):
        if client:
            s.client_data(data, i, i / 10)
        else:
            s.server_data(data, i, i / 10)
    s.server_closed(99, 9.9)
    # whatever happened, the session answers its questions
    assert s.protocol in ("http1", "http2", "tls")
    assert isinstance(s.wants_more, bool)
    s.exchanges()
