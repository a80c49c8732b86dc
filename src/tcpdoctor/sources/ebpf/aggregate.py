"""In-kernel aggregation: counts kept in bpftrace maps, read every N seconds.

This is the cheap mode (no event crosses to user space; measured in
benchmarks/trace_overhead.py) and the engine of the future Prometheus agent::

    with Aggregator(ProgramSpec(aggregate_every=5)) as agg:
        for snapshot in agg.snapshots():
            for metric, series in snapshot.counters.items():
                ...  # e.g. "tcpdoctor_tcp_resets_sent_total", {(("reason", "NO_SOCKET"), ...): 3}

Values are cumulative since the aggregator started (the maps are never cleared), so they map
directly onto Prometheus counters. Reasons and states are decoded with the running kernel's
format files, like the per-event mode.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from tcpdoctor.model import InputError
from tcpdoctor.sources.ebpf.formats import KernelFormats, TracepointFormat, state_name
from tcpdoctor.sources.ebpf.programs import Program, ProgramSpec, build_program
from tcpdoctor.sources.ebpf.runner import Bpftrace, check_environment
from tcpdoctor.sources.ebpf.sampling import read_counters

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class MapSpec:
    metric: str
    labels: tuple[str, ...]  # label name per map key component
    help: str


# bpftrace map -> Prometheus metric (node_exporter naming: tcpdoctor_<subsystem>_<what>_total)
MAPS: dict[str, MapSpec] = {
    "@resets_sent": MapSpec(
        "tcpdoctor_tcp_resets_sent_total", ("reason", "state"), "TCP resets sent, by kernel reason"
    ),
    "@resets_received": MapSpec(
        "tcpdoctor_tcp_resets_received_total", ("state",), "TCP resets received, by socket state"
    ),
    "@retransmits": MapSpec(
        "tcpdoctor_tcp_retransmits_total", ("state",), "TCP segments retransmitted, by socket state"
    ),
    "@drops": MapSpec("tcpdoctor_tcp_drops_total", ("reason",), "TCP packets dropped, by kernel drop reason"),
    "@connects": MapSpec(
        "tcpdoctor_tcp_connects_total", ("result",), "Active opens that finished, by result"
    ),
    "@established": MapSpec("tcpdoctor_tcp_established_total", (), "Connections that reached ESTABLISHED"),
    "@closed": MapSpec("tcpdoctor_tcp_closed_total", (), "Established connections that closed"),
}
OVERFLOW_METRIC = "tcpdoctor_tcp_listen_overflows_total"


@dataclass
class Snapshot:
    at: float  # seconds since the aggregator started
    counters: dict[str, dict[Labels, int]] = field(default_factory=dict)

    def total(self, metric: str) -> int:
        return sum(self.counters.get(metric, {}).values())

    def value(self, metric: str, **labels: str) -> int:
        want = set(labels.items())
        return sum(v for k, v in self.counters.get(metric, {}).items() if want <= set(k))


def _decode(
    map_name: str, key: str, formats: dict[str, TracepointFormat]
) -> Labels:  # "14,7" -> (("reason", "TCP_STATE"), ("state", "CLOSE"))
    spec = MAPS[map_name]
    parts = key.split(",") if key else []
    labels = []
    for name, raw in zip(spec.labels, parts, strict=False):
        number = int(raw)
        if name == "state":
            text = state_name(number)
        elif name == "result":
            text = "established" if number else "failed"
        else:
            tp = formats.get("tcp_send_reset" if map_name == "@resets_sent" else "kfree_skb")
            text = tp.symbol("reason", number) if tp is not None and number >= 0 else "unknown"
        labels.append((name, text))
    return tuple(labels)


def decode_map(data: dict[str, Any], formats: dict[str, TracepointFormat]) -> dict[str, dict[Labels, int]]:
    """One ``{"type": "map"}`` message's data as metric -> labels -> value."""
    out: dict[str, dict[Labels, int]] = {}
    for map_name, value in data.items():
        spec = MAPS.get(map_name)
        if spec is None:
            continue
        series = out.setdefault(spec.metric, {})
        if isinstance(value, dict):
            for key, count in value.items():
                labels = _decode(map_name, str(key), formats)
                series[labels] = series.get(labels, 0) + int(count)
        else:
            series[()] = int(value)
    return out


class Aggregator:
    """Runs an aggregate program and yields a :class:`Snapshot` every interval."""

    def __init__(
        self, spec: ProgramSpec, formats: KernelFormats | None = None, cancel: threading.Event | None = None
    ) -> None:
        if spec.aggregate_every is None:
            raise InputError("the aggregator needs an interval (ProgramSpec.aggregate_every)")
        self.spec = spec
        self.program: Program = build_program(spec, formats or KernelFormats())
        self.maps = [m for m in MAPS if f"{m}[" in self.program.text or f"{m} =" in self.program.text]
        self.runner: Bpftrace | None = None
        self.stopped = threading.Event()
        self.cancel = cancel
        self._started = 0.0
        self._overflow_base: int | None = None

    def __enter__(self) -> Aggregator:
        exe = check_environment()
        if self.maps:
            self.runner = Bpftrace(self.program.text, exe)
            self.runner.start(cancel=self.cancel)
        self._started = time.monotonic()
        if "overflow" in self.spec.what:
            self._overflow_base = read_counters("self")[0].get("ListenOverflows", 0)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self.stopped.set()
        if self.runner is not None:
            self.runner.stop()

    def snapshots(self) -> Iterator[Snapshot]:
        """One snapshot per interval until :meth:`close` (or bpftrace exits)."""
        if self.runner is None:  # counters only (overflow): no program to run
            while not self.stopped.wait(float(self.spec.aggregate_every or 1)):
                yield self._finish(Snapshot(0.0))
            return
        # bpftrace prints every map one after the other in the interval probe (an empty map prints
        # nothing): a batch ends when the stream goes quiet.
        current: Snapshot | None = None
        while not self.stopped.is_set():
            if not self.runner.running and self.runner.messages.empty():
                if self.stopped.is_set():
                    return
                raise InputError(f"bpftrace stopped: {self.runner.error_line()}")
            got = False
            for msg in self.runner.poll(0.1):
                if msg.get("type") != "map":
                    continue
                got = True
                current = current or Snapshot(0.0)
                current.counters.update(decode_map(msg.get("data", {}), self.program.formats))
            if current is not None and not got:
                yield self._finish(current)
                current = None

    def _finish(self, snap: Snapshot) -> Snapshot:
        snap.at = time.monotonic() - self._started
        if self._overflow_base is not None:
            now = read_counters("self")[0].get("ListenOverflows", 0)
            snap.counters[OVERFLOW_METRIC] = {(("netns", "host"),): now - self._overflow_base}
        return snap
