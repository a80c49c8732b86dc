"""Collect a node snapshot: every collector on its own, and with an interval two counter samples → rates.

A collector that fails records why in ``snapshot.skipped`` and the others go on.
Nothing here writes to /proc/sys or changes any setting.
"""

from __future__ import annotations

import os
import platform
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from tcpdoctor.evidence.node import Counters, NodeSnapshot
from tcpdoctor.sources.node import conntrack, counters, links, sockets, sysctls

T = TypeVar("T")


def sample_counters(skipped: dict[str, str]) -> Counters:
    sample = counters.collect(skipped)
    sample.conntrack = conntrack.collect(skipped)
    return sample


def _guarded(name: str, skipped: dict[str, str], fn: Callable[[], T]) -> T | None:
    try:
        return fn()
    except Exception as exc:  # a failing collector never fails the others
        skipped[name] = f"collector failed: {type(exc).__name__}: {exc}"
        return None


def _netns() -> str:
    try:
        return os.readlink("/proc/self/ns/net")
    except OSError:
        return ""


def collect(
    interval: float | None = None,
    *,
    owners: bool = True,
    service_cidrs: list[str] | None = None,
    pod_cidrs: list[str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> NodeSnapshot:
    """One snapshot of this network namespace; with ``interval`` the counters are sampled twice."""
    skipped: dict[str, str] = {}
    snap = NodeSnapshot(
        hostname=socket.gethostname(),
        kernel=platform.release(),
        taken_at=datetime.now(UTC).isoformat(timespec="seconds"),
        netns=_netns(),
        privileged=os.geteuid() == 0,
        service_cidrs=list(service_cidrs or []),
        pod_cidrs=list(pod_cidrs or []),
    )
    baseline = None
    if interval:
        baseline = _guarded("counters", skipped, lambda: sample_counters({}))
        sleep(interval)
    snap.sysctls = _guarded("sysctls", skipped, lambda: sysctls.collect(skipped)) or {}
    snap.counters = _guarded("counters", skipped, lambda: sample_counters(skipped)) or Counters()
    snap.baseline = baseline
    snap.sockets = _guarded("sockets", skipped, lambda: sockets.collect(skipped, owners=owners))
    snap.net = _guarded("links", skipped, lambda: links.collect(skipped))
    snap.skipped = skipped
    return snap
