"""bpftrace as a subprocess (``-f json``: one JSON object per line), and the trace session around it.

:class:`Bpftrace` starts the program, waits until its probes are attached and yields the
decoded messages. :class:`TraceSession` adds the namespace sampling, attribution and filters,
and returns :class:`~tcpdoctor.evidence.trace.TraceEvidence` for the TRC rules.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tcpdoctor.evidence.trace import KIND_CODES, Attribution, TraceEvent, TraceEvidence
from tcpdoctor.model import InputError
from tcpdoctor.sources.ebpf.attribution import Attributor
from tcpdoctor.sources.ebpf.formats import KernelFormats, TracepointFormat, state_name
from tcpdoctor.sources.ebpf.programs import COLUMNS, Program, ProgramSpec, build_program
from tcpdoctor.sources.ebpf.sampling import NamespaceWatch

ATTACH_TIMEOUT = 60.0
DRAIN_QUIET = 0.5  # seconds without output before the tracer is stopped
DRAIN_LIMIT = 10.0  # at most this long
# bpftrace writes this on every start on kernels where RLIMIT_MEMLOCK no longer applies (memcg accounting)
_BENIGN_STDERR = ("RLIMIT_MEMLOCK",)


def check_environment() -> str:
    """bpftrace's path, after checking root and tracefs; else InputError with the one-line reason."""
    exe = shutil.which("bpftrace")
    if exe is None:
        raise InputError("bpftrace is not installed: `apt-get install bpftrace` (Debian/Ubuntu)")
    if os.geteuid() != 0:
        raise InputError("tracing the kernel needs root: run `sudo tcpdoctor trace ...`")
    KernelFormats().require_readable()  # raises with the mount command when tracefs is missing
    return exe


class Bpftrace:
    """One bpftrace process running ``program``; messages are read by a thread into a queue."""

    def __init__(self, program: str, exe: str | None = None) -> None:
        self.exe = exe or shutil.which("bpftrace") or "bpftrace"
        self.program = program
        fd, self._path = tempfile.mkstemp(prefix="tcpdoctor-", suffix=".bt")
        with os.fdopen(fd, "w") as fh:
            fh.write(program)
        self.proc: subprocess.Popen[str] | None = None
        self.messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.stderr: list[str] = []
        self.lost = 0

    def start(self, timeout: float = ATTACH_TIMEOUT, cancel: threading.Event | None = None) -> None:
        """Start bpftrace and return once its probes are live; KeyboardInterrupt if ``cancel`` is
        set meanwhile (compiling and attaching takes seconds, tens of seconds on a busy node)."""
        self._start(timeout, cancel or threading.Event())

    def _start(self, timeout: float, cancel: threading.Event) -> None:
        try:
            self._attach(timeout, cancel)
        finally:
            # bpftrace read the program before attaching: nothing is left behind if we are killed
            Path(self._path).unlink(missing_ok=True)

    def _attach(self, timeout: float, cancel: threading.Event) -> None:
        env = dict(
            os.environ, BPFTRACE_MAP_KEYS_MAX="65536", BPFTRACE_STRLEN="16", BPFTRACE_PERF_RB_PAGES="1024"
        )
        self.proc = subprocess.Popen(
            [self.exe, "-B", "none", "-f", "json", self._path],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,  # Ctrl-C reaches us, not bpftrace: we stop it ourselves
        )
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cancel.is_set():
                self.stop(grace=0)
                raise KeyboardInterrupt
            try:
                msg = self.messages.get(timeout=0.1)
            except queue.Empty:
                continue
            if msg is None:
                break
            if msg.get("type") == "attached_probes":
                if "READY" not in self.program:
                    return
                ready_by = time.monotonic() + timeout
                while time.monotonic() < ready_by and not cancel.is_set():
                    os.getppid()  # fires the program's readiness probe once everything is attached
                    try:
                        msg = self.messages.get(timeout=0.05)
                    except queue.Empty:
                        continue
                    if msg is None:
                        break
                    if msg.get("type") == "printf" and msg.get("data", "").startswith("READY"):
                        return
                    self.messages.put(msg)  # a real event that raced the readiness probe: keep it
                break
        self.stop()
        raise InputError(f"bpftrace did not start: {self.error_line()}")

    def error_line(self) -> str:
        time.sleep(0.1)
        useful = [line for line in self.stderr if line.strip() and not any(b in line for b in _BENIGN_STDERR)]
        errors = [line for line in useful if "ERROR" in line] or useful
        return errors[0].strip() if errors else "no output (timed out)"

    def _read_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                msg = json.loads(line)
            except json.JSONDecodeError:
                continue
            if msg.get("type") == "lost_events":
                data = msg.get("data", {})
                self.lost += int(data.get("events", 0) if isinstance(data, dict) else data)
                continue
            self.messages.put(msg)
        self.messages.put(None)

    def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip())

    def poll(self, timeout: float) -> Iterator[dict[str, Any]]:
        """Messages that arrive within ``timeout`` seconds (stops early when bpftrace has exited)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                msg = self.messages.get(timeout=max(left, 0.0)) if left > 0 else self.messages.get_nowait()
            except queue.Empty:
                return
            if msg is None:
                self.messages.put(None)
                return
            yield msg

    def recursion_misses(self) -> int:
        """Probe runs the kernel skipped: a tracing BPF program does not run while another one
        runs on the same CPU (kernel/trace/bpf_trace.c trace_call_bpf(), bpf_prog_active), e.g.
        a softirq transition interrupting a probe. Read from the programs' fdinfo."""
        if self.proc is None:
            return 0
        total = 0
        fdinfo = Path(f"/proc/{self.proc.pid}/fdinfo")
        try:
            entries = list(fdinfo.iterdir())
        except OSError:
            return 0
        for entry in entries:
            try:
                text = entry.read_text()
            except OSError:
                continue
            for line in text.splitlines():
                if line.startswith("recursion_misses:"):
                    total += int(line.split()[1])
        return total

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 1.5) -> None:
        """SIGINT (bpftrace flushes and runs END), then SIGKILL after ``grace`` seconds: bpftrace
        0.17's own teardown was measured taking up to 25 s on a loaded machine, and the kernel
        detaches the probes as soon as the process is gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        Path(self._path).unlink(missing_ok=True)


def _flags(code: int) -> str:
    return "|".join(name for bit, name in ((1, "SYN"), (2, "RST")) if code & bit) or "-"


def parse_record(
    data: str, formats: dict[str, TracepointFormat], start_ns: int, attributor: Attributor | None = None
) -> TraceEvent | None:
    """One printf record of a per-event program (see programs.COLUMNS) as a TraceEvent."""
    cols = data.rstrip("\n").split("\t")
    if len(cols) != len(COLUMNS) or cols[0] not in KIND_CODES:
        return None
    row = dict(zip(COLUMNS, cols, strict=True))
    code = cols[0]
    state_code, reason_code, value = int(row["state"]), int(row["reason"]), int(row["value"])
    event = TraceEvent(
        kind=KIND_CODES[code],
        time=max(int(row["ns"]) - start_ns, 0) / 1e9,
        saddr=row["saddr"],
        sport=int(row["sport"]),
        daddr=row["daddr"],
        dport=int(row["dport"]),
        state=state_name(state_code),
        netns=int(row["netns"]),
        task_pid=int(row["pid"]),
        task_comm=row["comm"],
    )
    cgroup, owner_pid, owner_comm = int(row["cgroup"]), int(row["owner_pid"]), row["owner_comm"]
    if attributor is not None:
        event.owner = attributor.attribute(cgroup, owner_pid, owner_comm)
    else:
        event.owner = Attribution(pid=owner_pid or None, comm=owner_comm or None, cgroup_id=cgroup)
    if code == "RS":
        tp = formats.get("tcp_send_reset")
        event.reason = None if reason_code < 0 or tp is None else tp.symbol("reason", reason_code)
        event.has_socket = bool(value & 1)  # programs._resets: has_socket + 2 * (answers a SYN)
        event.syn = bool(value & 2)
    elif code == "DR":
        tp = formats.get("kfree_skb")
        event.reason = None if reason_code < 0 or tp is None else tp.symbol("reason", reason_code)
        event.state = _flags(state_code)
        event.length = value
    elif code == "RT":
        event.reason = f"err {reason_code}" if reason_code else None
    elif code == "CN":
        event.micros = value if value >= 0 else None
        event.reason = None if state_code == 1 else "failed"
    elif code == "LT":
        event.micros = value if value >= 0 else None
        event.server_side = bool(reason_code)
    return event


@dataclass
class Filters:
    """Who to keep, decided in Python on the socket's owner (never interpolated into the program)."""

    pids: frozenset[int] = frozenset()
    comms: frozenset[str] = frozenset()
    ports: frozenset[int] = frozenset()
    cgroups: frozenset[int] = frozenset()
    pods: frozenset[str] = frozenset()

    def _owners(self, event: TraceEvent) -> list[Attribution]:
        return [event.owner, *([event.peer] if event.peer else [])]

    def keep(self, event: TraceEvent) -> bool:
        if self.ports and not ({event.sport, event.dport} & self.ports):
            return False
        owners = self._owners(event)
        if self.pids and not any(o.pid in self.pids for o in owners):
            return False
        if self.comms and not any(o.comm in self.comms for o in owners):
            return False
        if self.cgroups and not any(o.cgroup_id in self.cgroups for o in owners):
            return False
        return not (self.pods and not any(o.pod_uid in self.pods for o in owners))

    @property
    def active(self) -> bool:
        return bool(self.pids or self.comms or self.ports or self.cgroups or self.pods)


def link_refused_peers(events: Iterable[TraceEvent]) -> None:
    """A reset sent with no socket (NO_SOCKET) has no owner; when the refused peer is a local
    socket we saw (its connect failing, or its receive_reset), name that peer instead."""
    by_tuple: dict[tuple[str, str], Attribution] = {}
    pending: list[TraceEvent] = []
    for e in events:
        if e.kind == "reset_sent" and not e.has_socket:
            pending.append(e)
        elif e.kind in ("reset_received", "connect") and e.owner.pid:
            by_tuple[(e.local, e.remote)] = e.owner
    for e in pending:
        e.peer = by_tuple.get((e.remote, e.local))


def adopt_listener_owners(evidence: TraceEvidence) -> None:
    """Sockets accepted from a listener that existed before the trace have no owner recorded in
    the kernel; the listener sampled by sock_diag (same namespace, same local port) names it."""
    listeners = {(ls.netns, ls.port): ls for ls in evidence.listeners if ls.pid}
    for e in evidence.events:
        if e.owner.pid or e.kind == "drop" or not e.has_socket:
            continue
        ls = listeners.get((e.netns, e.sport))
        if ls is not None:
            e.owner.pid, e.owner.comm = ls.pid, ls.comm


@dataclass
class TraceSession:
    """One trace: program + namespace sampling; ``run`` returns the evidence."""

    spec: ProgramSpec
    filters: Filters = field(default_factory=Filters)
    on_event: Callable[[TraceEvent], None] | None = None
    on_counts: Callable[[dict[str, dict[str, int]]], None] | None = None
    formats: KernelFormats | None = None
    ready: threading.Event = field(default_factory=threading.Event)  # set once the probes are attached
    all_namespaces: bool = False  # sample every network namespace's counters and listeners
    netns_files: tuple[str, ...] = ()  # sample these namespaces too (default: only our own)

    def run(self, duration: float | None, stop: threading.Event | None = None) -> TraceEvidence:
        exe = check_environment()
        fmts = self.formats or KernelFormats()
        program = build_program(self.spec, fmts)
        attributor = Attributor()
        evidence = TraceEvidence(what=self.spec.what, notes=list(program.notes))
        watch_pids = sorted(self.filters.pids) if self.filters.pids else None
        # the namespaces' counters are also the fallback when a tracepoint is missing (program.notes)
        watch = (
            NamespaceWatch(watch_pids, all_namespaces=self.all_namespaces, netns_files=self.netns_files)
            if "overflow" in self.spec.what or program.notes
            else None
        )
        runner = Bpftrace(program.text, exe) if program.probes else None
        stop = stop or threading.Event()
        start_ns = time.monotonic_ns()
        started = time.monotonic()
        try:
            if runner is not None:
                runner.start(cancel=stop)
            start_ns = time.monotonic_ns()  # bpftrace's nsecs is CLOCK_MONOTONIC
            started = time.monotonic()
            if watch is not None:
                watch.start()
            self.ready.set()
            self._loop(runner, program, attributor, evidence, start_ns, started, duration, stop)
        except KeyboardInterrupt:
            pass
        finally:
            if runner is not None:
                # bpftrace may lag behind the kernel on a busy machine: read until the stream has
                # been quiet for a moment, so the last events are not lost with the process
                deadline, quiet_since = time.monotonic() + DRAIN_LIMIT, time.monotonic()
                while runner.running and time.monotonic() < deadline:
                    if time.monotonic() - quiet_since > DRAIN_QUIET:
                        break
                    for msg in runner.poll(0.1):
                        quiet_since = time.monotonic()
                        self._handle(msg, program, attributor, evidence, start_ns)
                evidence.missed_runs = runner.recursion_misses()
                runner.stop()
                if runner.running is False and runner.proc is not None:
                    for msg in runner.poll(0.5):
                        self._handle(msg, program, attributor, evidence, start_ns)
                evidence.lost_events = runner.lost
            evidence.duration = time.monotonic() - started
            if watch is not None:
                ns, listeners, notes = watch.stop()
                evidence.namespaces, evidence.listeners = ns, listeners
                evidence.notes += notes
        evidence.events.sort(key=lambda e: e.time)
        adopt_listener_owners(evidence)
        link_refused_peers(evidence.events)
        if self.filters.active:
            evidence.events = [e for e in evidence.events if self.filters.keep(e)]
        if evidence.lost_events:
            evidence.notes.append(f"{evidence.lost_events} events were lost (perf buffer full)")
        if evidence.missed_runs:
            evidence.notes.append(
                f"the kernel skipped {evidence.missed_runs} probe runs (a BPF program cannot run while "
                "another runs on the same CPU): counts are lower bounds"
            )
        return evidence

    def _loop(
        self,
        runner: Bpftrace | None,
        program: Program,
        attributor: Attributor,
        evidence: TraceEvidence,
        start_ns: int,
        started: float,
        duration: float | None,
        stop: threading.Event,
    ) -> None:
        while not stop.is_set():
            left = None if duration is None else duration - (time.monotonic() - started)
            if left is not None and left <= 0:
                return
            step = 0.2 if left is None else min(0.2, left)
            if runner is None:
                time.sleep(step)
                continue
            if not runner.running and runner.messages.empty():
                raise InputError(f"bpftrace stopped: {runner.error_line()}")
            for msg in runner.poll(step):
                self._handle(msg, program, attributor, evidence, start_ns)

    def _handle(
        self,
        msg: dict[str, Any],
        program: Program,
        attributor: Attributor,
        evidence: TraceEvidence,
        start_ns: int,
    ) -> None:
        kind = msg.get("type")
        if kind == "printf":
            event = parse_record(str(msg.get("data", "")), program.formats, start_ns, attributor)
            if event is None:
                return
            evidence.events.append(event)
            if self.on_event is not None and self.filters.keep(event):
                self.on_event(event)
        elif kind == "map" and self.on_counts is not None:
            self.on_counts(msg.get("data", {}))
