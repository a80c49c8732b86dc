"""Cumulative counters: /proc/net/snmp, /proc/net/netstat and /proc/net/softnet_stat.

/proc/net/* follows the reader's network namespace; softnet_stat is per CPU and
node-wide. Each file is read independently: one that is missing or unreadable is
recorded in ``skipped`` and the others go on.
"""

from __future__ import annotations

import time
from pathlib import Path

from tcpdoctor.evidence.node import Counters

PROC_NET = Path("/proc/net")
SOFTNET_COLUMNS = ("processed", "dropped", "time_squeeze")


def parse_snmp(text: str) -> dict[str, dict[str, int]]:
    """The header/value line pairs of /proc/net/snmp and /proc/net/netstat."""
    groups: dict[str, dict[str, int]] = {}
    lines = text.splitlines()
    for header, values in zip(lines[::2], lines[1::2], strict=False):
        group, _, names = header.partition(":")
        vgroup, _, numbers = values.partition(":")
        if group != vgroup:
            raise ValueError(f"unpaired lines {group!r} / {vgroup!r}")
        groups.setdefault(group.strip(), {}).update(
            {n: int(v) for n, v in zip(names.split(), numbers.split(), strict=True)}
        )
    return groups


def parse_softnet(text: str) -> list[dict[str, int]]:
    """/proc/net/softnet_stat: per CPU, hex columns processed, dropped, time_squeeze, ..."""
    cpus = []
    for line in text.splitlines():
        cols = line.split()
        cpus.append({name: int(cols[i], 16) for i, name in enumerate(SOFTNET_COLUMNS) if i < len(cols)})
    return cpus


def collect(skipped: dict[str, str]) -> Counters:
    counters = Counters(taken_at=time.time())
    for name in ("snmp", "netstat"):
        try:
            counters.snmp.update(parse_snmp((PROC_NET / name).read_text()))
        except (OSError, ValueError) as exc:
            skipped[f"counters /proc/net/{name}"] = why(exc)
    try:
        counters.softnet = parse_softnet((PROC_NET / "softnet_stat").read_text())
    except (OSError, ValueError) as exc:
        skipped["softnet_stat"] = why(exc)
    return counters


def why(exc: Exception) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return f"unexpected format: {exc}"
