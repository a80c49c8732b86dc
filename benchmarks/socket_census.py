"""Benchmark: tcpdoctor's socket census on 100,000 sockets next to `ss -tan state all | wc -l`.

    sudo .venv/bin/python benchmarks/socket_census.py [--connections 50000] [--rounds 7] [--record]

Target (PRODUCT.md): the census of 100,000 sockets in under 1 s, and no slower than 2x ss.

It creates a network namespace (tdlab-bench-*, removed at the end); inside it, worker processes
raise RLIMIT_NOFILE to their hard limit (which root cannot raise further here: no
CAP_SYS_RESOURCE) and open 50,000 loopback connections between them (both ends: 100,000
sockets plus the listeners) in the widened ip_local_port_range; then, alternating, round after
round, it times:
  - tcpdoctor's census (tcpdoctor.sources.node.sockets.census: raw NETLINK_SOCK_DIAG dumps
    parsed with struct, counting states and grouping peers; listener owners off, as ss -tan);
  - `ss -tan state all | wc -l` run through the shell (what a user would type);
  - the census with listener owners (/proc/<pid>/fd), as `tcpdoctor node` runs it;
  - pyroute2's DiagSocket.get_sock_stats() on the same sockets (one round: it is slow),
    the reason the census does not use it.
Medians are printed; --record writes them as a section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import secrets
import socket
import statistics
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
RESULTS = HERE / "RESULTS.md"
BEGIN = "<!-- socket_census.py: begin -->"
END = "<!-- socket_census.py: end -->"
PER_WORKER = 9_000


def _timed(fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start


def _hold(count: int, ready: Connection, stop: Connection) -> None:
    """A worker: ``count`` loopback connections, both ends held until told to stop."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    addr = listener.getsockname()
    held: list[socket.socket] = []
    for _ in range(count):
        client = socket.socket()
        client.connect(addr)
        server, _ = listener.accept()
        held += (client, server)
    ready.send(len(held))
    stop.recv()
    for s in held:
        s.close()


def inner(connections: int, rounds: int) -> dict[str, object]:
    sys.path.insert(0, str(SRC))
    from tcpdoctor.sources.node import sockets

    Path("/proc/sys/net/ipv4/ip_local_port_range").write_text("1024 65535\n")
    # RLIMIT_NOFILE can be raised only to the hard limit (20,000 here: no CAP_SYS_RESOURCE),
    # so the sockets are spread over workers of at most PER_WORKER connections each.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    per_worker = max(1, min(PER_WORKER, (hard - 100) // 2))
    ctx = multiprocessing.get_context("fork")
    workers, stops = [], []
    started = time.perf_counter()
    left = connections
    while left > 0:
        share = min(per_worker, left)
        left -= share
        ready_r, ready_w = ctx.Pipe(duplex=False)
        stop_r, stop_w = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_hold, args=(share, ready_w, stop_r))
        proc.start()
        workers.append((proc, ready_r))
        stops.append(stop_w)
    opened_fds = sum(ready.recv() for _, ready in workers)
    opened = time.perf_counter() - started

    def ss() -> int:
        out = subprocess.run(
            "ss -tan state all | wc -l", shell=True, capture_output=True, text=True, check=True
        )
        return int(out.stdout)

    try:
        census = sockets.census(owners=False)
        ss_lines = ss()
        ours, theirs, owned = [], [], []
        for _ in range(rounds):
            ours.append(_timed(lambda: sockets.census(owners=False)))
            theirs.append(_timed(ss))
            owned.append(_timed(lambda: sockets.census(owners=True)))
        pyroute2_times = []
        try:
            from pyroute2 import DiagSocket

            for _ in range(1):  # about 0.3 ms a socket: one round says enough
                with DiagSocket() as ds:
                    ds.bind()
                    pyroute2_times.append(
                        _timed(
                            lambda ds=ds: [
                                ds.get_sock_stats(family=f) for f in (socket.AF_INET, socket.AF_INET6)
                            ]
                        )
                    )
        except Exception as exc:  # reported, not fatal
            print(f"pyroute2 DiagSocket failed: {exc}", file=sys.stderr)
    finally:
        for stop in stops:
            stop.send(True)
        for proc, _ in workers:
            proc.join(timeout=60)
    return {
        "sockets": census.total,
        "held_fds": opened_fds,
        "workers": len(workers),
        "ss_lines": ss_lines - 1,  # the header line
        "open_seconds": opened,
        "census": statistics.median(ours),
        "census_all": ours,
        "ss": statistics.median(theirs),
        "ss_all": theirs,
        "pyroute2": statistics.median(pyroute2_times) if pyroute2_times else None,
        "owners": statistics.median(owned),
        "owners_all": owned,
    }


def record(result: dict[str, object], command: str) -> None:
    census, ss = float(result["census"]), float(result["ss"])  # type: ignore[arg-type]
    pyroute2 = result["pyroute2"]
    lines = [
        BEGIN,
        "## Socket census (`tcpdoctor node`), 100,000 sockets",
        "",
        f"Command: `{command}`  ",
        f"Machine: {os.cpu_count()} cores, kernel {platform.release()}, Python {platform.python_version()}; "
        f"{result['sockets']} TCP sockets in a network namespace (ss counted {result['ss_lines']}), "
        f"held by {result['workers']} processes.",
        "",
        "| what | median | rounds |",
        "|---|---|---|",
        f"| tcpdoctor census (raw sock_diag + struct) | {census * 1000:.0f} ms | "
        + ", ".join(f"{t * 1000:.0f}" for t in result["census_all"])  # type: ignore[attr-defined]
        + " |",
        f"| `ss -tan state all \\| wc -l` | {ss * 1000:.0f} ms | "
        + ", ".join(f"{t * 1000:.0f}" for t in result["ss_all"])  # type: ignore[attr-defined]
        + " |",
        f"| census + listener owners via /proc/<pid>/fd (what `tcpdoctor node` runs) | "
        f"{float(result['owners']) * 1000:.0f} ms | "  # type: ignore[arg-type]
        + ", ".join(f"{t * 1000:.0f}" for t in result["owners_all"])  # type: ignore[attr-defined]
        + " |",
        "| pyroute2 DiagSocket.get_sock_stats (not used) | "
        + (f"{float(pyroute2) * 1000:.0f} ms" if pyroute2 is not None else "failed")  # type: ignore[arg-type]
        + " | 1 |",
        "",
        f"Target: under 1 s ({'met' if census < 1 else 'NOT met'}) and no slower than 2x ss "
        f"({census / ss:.2f}x: {'met' if census <= 2 * ss else 'NOT met'}).",
        END,
    ]
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        text = head + "\n".join(lines) + tail
    else:
        text = text.rstrip("\n") + "\n\n" + "\n".join(lines) + "\n"
    RESULTS.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--record", action="store_true", help="write the figures into benchmarks/RESULTS.md")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        import json

        print(json.dumps(inner(args.connections, args.rounds)))
        return
    if os.geteuid() != 0:
        sys.exit("socket_census.py needs root (it creates a network namespace)")
    ns = f"tdlab-bench-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
        proc = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                ns,
                sys.executable,
                __file__,
                "--inner",
                "--connections",
                str(args.connections),
                "--rounds",
                str(args.rounds),
            ],
            capture_output=True,
            text=True,
            timeout=900,
        )
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    if proc.returncode != 0:
        sys.exit(f"inner run failed: {proc.stderr.strip()}")
    import json

    result = json.loads(proc.stdout.strip().splitlines()[-1])
    census, ss = result["census"], result["ss"]
    print(
        f"sockets in the namespace: {result['sockets']} (ss lines {result['ss_lines']}); opened in {result['open_seconds']:.1f} s"
    )
    print(f"tcpdoctor census median {census * 1000:.0f} ms over {args.rounds} rounds")
    print(f"ss -tan state all | wc -l median {ss * 1000:.0f} ms over {args.rounds} rounds")
    print(f"census with listener owners median {result['owners'] * 1000:.0f} ms over {args.rounds} rounds")
    if result["pyroute2"] is not None:
        print(f"pyroute2 DiagSocket {result['pyroute2'] * 1000:.0f} ms (one round)")
    print(
        f"census/ss = {census / ss:.2f}x; target < 1 s and <= 2x ss: {'met' if census < 1 and census <= 2 * ss else 'NOT met'}"
    )
    if args.record:
        record(result, "sudo .venv/bin/python benchmarks/socket_census.py --record")
        print(f"recorded in {RESULTS}")


if __name__ == "__main__":
    main()
