"""Packet captures: a streaming pcap/pcapng reader, a compiled fast path, TCP connection tracking.

``reader`` frames records, ``fastpath`` decodes link/IP/TCP headers and tracks connections in
compiled loops, ``tracker`` turns finished connections into :mod:`tcpdoctor.evidence.pcap`
records and feeds the app-layer analyzers (HTTP/1.1, HTTP/2, TLS heads).
"""
