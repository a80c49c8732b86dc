"""Conntrack statistics: /proc/net/stat/nf_conntrack (per network namespace, one line per CPU).

The table size and limit (nf_conntrack_count / nf_conntrack_max) are sysctls and
come with the sysctls collector; this one reads the event counters the KRN003 and
KRN005 rules compare between samples: invalid, drop, early_drop, insert_failed,
search_restart.
"""

from __future__ import annotations

from pathlib import Path

from tcpdoctor.sources.node.counters import why

STAT_FILE = Path("/proc/net/stat/nf_conntrack")


def parse_conntrack_stat(text: str) -> dict[str, int]:
    """A header, then one line of hex numbers per CPU; summed (``entries`` is the table size on every line)."""
    lines = text.split("\n")
    names = lines[0].split()
    total = dict.fromkeys(names, 0)
    for line in lines[1:]:
        if not line.strip():
            continue
        for name, hexa in zip(names, line.split(), strict=False):
            if name == "entries":
                total[name] = int(hexa, 16)
            else:
                total[name] += int(hexa, 16)
    return total


def collect(skipped: dict[str, str], path: Path = STAT_FILE) -> dict[str, int] | None:
    try:
        return parse_conntrack_stat(path.read_text())
    except FileNotFoundError:
        skipped["conntrack statistics"] = f"{path} absent (nf_conntrack not loaded)"
    except (OSError, ValueError) as exc:
        skipped["conntrack statistics"] = why(exc)
    return None
