"""Packet captures: a streaming pcap/pcapng reader, a compiled fast path, TCP connection tracking.

``reader`` frames records, ``fastpath`` decodes link/IP/TCP headers and tracks connections in
compiled loops, ``tracker`` turns finished connections into :mod:`tcpdoctor.evidence.pcap`
records and feeds the app-layer analyzers (HTTP/1.1, HTTP/2, TLS heads).
"""

# before any submodule imports numba: make sure its on-disk cache is writable
from tcpdoctor.sources.pcap import numba_cache as _numba_cache  # noqa: F401
