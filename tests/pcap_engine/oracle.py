"""tshark as the oracle: per capture, the counts our engine must reproduce."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

FIELDS = (
    "tcp.stream",
    "tcp.flags.reset",
    "tcp.analysis.retransmission",
    "tcp.analysis.fast_retransmission",
    "tcp.analysis.zero_window",
    "tcp.analysis.duplicate_ack",
    "tcp.analysis.keep_alive",
    "tcp.analysis.zero_window_probe",
)


@dataclass
class TsharkCounts:
    connections: int = 0
    rsts: int = 0
    retransmissions: int = 0
    fast_retransmissions: int = 0
    zero_windows: int = 0
    dup_acks: int = 0
    keep_alives_and_probes: int = 0


def tshark_counts(tshark: str, path: Path) -> TsharkCounts:
    cmd = [tshark, "-n", "-r", str(path), "-T", "fields", "-E", "occurrence=f"]
    for f in FIELDS:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=300).stdout
    streams: set[str] = set()
    c = TsharkCounts()
    for line in out.splitlines():
        cols = line.split("\t") + [""] * len(FIELDS)
        stream, rst, retx, fast, zw, dup, ka, zwp = cols[: len(FIELDS)]
        if stream:
            streams.add(stream)
        c.rsts += rst in ("1", "True")
        c.retransmissions += bool(retx)
        c.fast_retransmissions += bool(fast)
        c.zero_windows += bool(zw)
        c.dup_acks += bool(dup)
        c.keep_alives_and_probes += bool(ka) + bool(zwp)
    c.connections = len(streams)
    return c
