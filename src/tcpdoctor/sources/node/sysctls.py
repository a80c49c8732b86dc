"""Sysctls under /proc/sys/net that the KRN rules read (read-only; per network namespace).

Most of net.* is per network namespace, so `ip netns exec NS tcpdoctor node` reads
that namespace's values. A name that does not exist on this kernel (for example
tcp_tw_recycle, removed in 4.12) is simply absent from the result.
"""

from __future__ import annotations

import os
from pathlib import Path

PROC_SYS = Path("/proc/sys")

NAMES = (
    "net.core.somaxconn",
    "net.core.netdev_max_backlog",
    "net.core.rmem_default",
    "net.core.rmem_max",
    "net.core.wmem_default",
    "net.core.wmem_max",
    "net.ipv4.tcp_max_syn_backlog",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_tw_reuse",
    "net.ipv4.tcp_tw_recycle",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_timestamps",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.tcp_abort_on_overflow",
    "net.ipv4.tcp_retries2",
    "net.ipv4.tcp_max_tw_buckets",
    "net.ipv4.ip_forward",
    "net.ipv6.conf.all.forwarding",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_count",
    "net.netfilter.nf_conntrack_buckets",
    "net.netfilter.nf_conntrack_tcp_be_liberal",
    "net.netfilter.nf_conntrack_tcp_loose",
    "net.nf_conntrack_max",
)

# every file of these directories (name patterns) is read too
GLOBS = (
    ("net/ipv4/conf", "*/rp_filter"),
    ("net/netfilter", "nf_conntrack_tcp_timeout_*"),
    ("net/ipv4/neigh/default", "gc_*"),
    ("net/ipv6/neigh/default", "gc_*"),
    ("net/ipv4/vs", "*"),
)


def _read(path: Path) -> str:
    return " ".join(path.read_text().split())


def _dotted(path: Path) -> str:
    return ".".join(path.relative_to(PROC_SYS).parts)


def collect(skipped: dict[str, str]) -> dict[str, str]:
    """name -> value (whitespace collapsed: "32768 60999"); unreadable ones go to ``skipped``."""
    values: dict[str, str] = {}
    paths = [PROC_SYS / name.replace(".", "/") for name in NAMES]
    for directory, pattern in GLOBS:
        base = PROC_SYS / directory
        if base.is_dir():
            paths.extend(sorted(base.glob(pattern)))
    denied: list[str] = []
    for path in paths:
        if not path.is_file():
            continue  # absent on this kernel or in this namespace
        try:
            values[_dotted(path)] = _read(path)
        except PermissionError:
            denied.append(_dotted(path))
        except OSError as exc:
            skipped[f"sysctl {_dotted(path)}"] = exc.strerror or str(exc)
    if denied:
        who = "not root" if os.geteuid() != 0 else "permission denied"
        skipped["sysctls"] = f"{len(denied)} unreadable ({who}): " + ", ".join(denied[:5])
    return values
