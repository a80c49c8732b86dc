"""Benchmark: `tcpdoctor pcap F --format json` vs `tshark -r F -q -z conv,tcp` on the same capture.

Writes a synthetic capture of many short HTTP/1.1 connections (handshake, GET, a two-segment
200 response, FIN/FIN; 3% of them reset by the server, 2% with a retransmitted segment, 1%
SYNs never answered and retransmitted) with a vectorised writer of our own, then runs the two
commands alternately and reports the median packets/s and peak RSS of each (RSS from
wait4(2) of each child). A second file 4x as large is analysed by tcpdoctor only, to show
that its memory does not grow with the file (tshark keeps per-packet state: it is not run
on the 4x file so as not to exhaust a shared machine).

    .venv/bin/python benchmarks/pcap_throughput.py [--packets 2000000] [--runs 3] [--dir /tmp]

With --record the figures replace this benchmark's section of benchmarks/RESULTS.md (between
its markers; the reading written under them by hand goes too).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
REQ = (
    b"GET /api/items?page=1 HTTP/1.1\r\nHost: api.default.svc:8080\r\nUser-Agent: Go-http-client/1.1\r\n\r\n"
)
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2100\r\n\r\n"
BODY1 = HEAD + b"x" * (1448 - len(HEAD))
BODY2 = b"y" * (2100 - (1448 - len(HEAD)))
SYN_OPTS = (
    struct.pack("!BBH", 2, 4, 1460) + b"\x04\x02" + struct.pack("!BBII", 8, 10, 1, 0) + b"\x01\x03\x03\x07"
)


@dataclass(frozen=True)
class Pkt:
    """One packet of a connection template: who sends it, when, flags, relative seq/ack, payload."""

    from_client: bool
    dt: float
    flags: int
    seq: int
    ack: int
    payload: bytes = b""
    syn_opts: bool = False


def _templates() -> dict[str, list[Pkt]]:
    q, r1, r2 = len(REQ), len(BODY1), len(BODY2)
    s_end = 1 + r1 + r2
    head = [
        Pkt(True, 0.0, SYN, 0, 0, syn_opts=True),
        Pkt(False, 0.0002, SYN | ACK, 0, 1, syn_opts=True),
        Pkt(True, 0.0004, ACK, 1, 1),
        Pkt(True, 0.0005, PSH | ACK, 1, 1, REQ),
        Pkt(False, 0.0007, ACK, 1, 1 + q),
        Pkt(False, 0.0030, ACK, 1, 1 + q, BODY1),
        Pkt(False, 0.0031, PSH | ACK, 1 + r1, 1 + q, BODY2),
    ]
    ack = Pkt(True, 0.0040, ACK, 1 + q, s_end)
    close = [
        Pkt(True, 0.0050, FIN | ACK, 1 + q, s_end),
        Pkt(False, 0.0052, FIN | ACK, s_end, 2 + q),
        Pkt(True, 0.0054, ACK, 2 + q, s_end + 1),
    ]
    retx = Pkt(False, 0.0036, PSH | ACK, 1 + r1, 1 + q, BODY2)
    return {
        "normal": [*head, ack, *close],
        "reset": [*head, ack, Pkt(False, 0.0050, RST | ACK, s_end, 1 + q)],
        "retransmit": [*head, retx, ack, *close],
        "syn_timeout": [
            Pkt(True, 0.0, SYN, 0, 0, syn_opts=True),
            Pkt(True, 0.010, SYN, 0, 0, syn_opts=True),
            Pkt(True, 0.030, SYN, 0, 0, syn_opts=True),
        ],
    }


def _frame(p: Pkt) -> bytes:
    """Ethernet + IPv4 + TCP with zero addresses/ports/seq (patched per connection)."""
    opts = SYN_OPTS if p.syn_opts else b""
    tcp = struct.pack("!HHIIBBHHH", 0, 0, 0, 0, (20 + len(opts)) // 4 << 4, p.flags, 502, 0, 0) + opts
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(p.payload), 0, 0x4000, 64, 6, 0, b"\0" * 4, b"\0" * 4
    )
    return b"\x02\0\0\0\0\x01\x02\0\0\0\0\x02\x08\x00" + ip + tcp + p.payload


def _u32be(arr: np.ndarray, col: int, values: np.ndarray) -> None:
    v = values.astype(np.uint32)
    arr[:, col] = (v >> 24) & 255
    arr[:, col + 1] = (v >> 16) & 255
    arr[:, col + 2] = (v >> 8) & 255
    arr[:, col + 3] = v & 255


def write_capture(path: Path, packets: int, seed: int = 7) -> tuple[int, int]:
    """Write at least ``packets`` packets; returns (packets, connections)."""
    rng = np.random.default_rng(seed)
    templates = _templates()
    frames = {name: [np.frombuffer(_frame(p), np.uint8) for p in t] for name, t in templates.items()}
    names = list(templates)
    weights = np.array([0.94, 0.03, 0.02, 0.01])
    group = 256
    written = conns = 0
    chunk_t = 0.02
    base_t = 1_700_000_000.0
    with path.open("wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        g = 0
        while written < packets:
            name = names[int(rng.choice(4, p=weights))]
            tpl = templates[name]
            idx = conns + np.arange(group)
            client_ip = (10 << 24) | (1 << 16) | (idx // 50000 % 65536)
            cport = 10000 + idx % 50000
            isn_c = rng.integers(0, 2**32, group, dtype=np.uint64)
            isn_s = rng.integers(0, 2**32, group, dtype=np.uint64)
            t0 = base_t + g * chunk_t
            out = []
            for p, fr in zip(tpl, frames[name], strict=True):
                n = len(fr)
                rec = np.empty((group, 16 + n), np.uint8)
                rec[:, 16:] = fr
                ts = t0 + p.dt + np.arange(group) * 1e-6
                sec = ts.astype(np.int64)
                usec = ((ts - sec) * 1e6).astype(np.int64)
                hdr = np.empty((group, 4), "<u4")
                hdr[:, 0] = sec
                hdr[:, 1] = usec
                hdr[:, 2] = n
                hdr[:, 3] = n
                rec[:, :16] = hdr.view(np.uint8).reshape(group, 16)
                src, dst = (
                    (client_ip, np.full(group, 0x0A000002))
                    if p.from_client
                    else (
                        np.full(group, 0x0A000002),
                        client_ip,
                    )
                )
                sp, dp = (cport, np.full(group, 8080)) if p.from_client else (np.full(group, 8080), cport)
                _u32be(rec, 16 + 26, src)
                _u32be(rec, 16 + 30, dst)
                rec[:, 16 + 34] = sp >> 8
                rec[:, 16 + 35] = sp & 255
                rec[:, 16 + 36] = dp >> 8
                rec[:, 16 + 37] = dp & 255
                mine, peer = (isn_c, isn_s) if p.from_client else (isn_s, isn_c)
                _u32be(rec, 16 + 38, (mine + p.seq) % 2**32)
                _u32be(rec, 16 + 42, (peer + p.ack) % 2**32 if p.flags & ACK else np.zeros(group, np.uint64))
                out.append(rec.reshape(-1))
            fh.write(np.concatenate(out).tobytes())
            written += group * len(tpl)
            conns += group
            g += 1
    return written, conns


BEGIN, END = "<!-- pcap_throughput.py: begin -->", "<!-- pcap_throughput.py: end -->"


def record(args: argparse.Namespace, lines: list[str]) -> None:
    """Replace this benchmark's section of benchmarks/RESULTS.md (between its markers)."""
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    section = (
        f"{BEGIN}\n## pcap throughput (`benchmarks/pcap_throughput.py`)\n\n"
        f"Command: `.venv/bin/python benchmarks/pcap_throughput.py --packets {args.packets} --runs {args.runs} --record`"
        f" ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores shared with other jobs,"
        f" load average {load} at the end; medians of runs alternated with tshark)\n\n"
        + "".join(f"- {line}\n" for line in lines)
        + END
    )
    results = HERE / "RESULTS.md"
    text = results.read_text(encoding="utf-8") if results.exists() else "# Benchmark results\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    results.write_text(text, encoding="utf-8")


@dataclass
class Run:
    seconds: float
    max_rss_mb: float


def measure(cmd: list[str]) -> Run:
    started = time.perf_counter()
    with open(os.devnull, "wb") as null:
        proc = subprocess.Popen(cmd, stdout=null, stderr=subprocess.PIPE)
        assert proc.stderr is not None
        err = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {err.decode()[-500:]}")
    return Run(elapsed, usage.ru_maxrss / 1024)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packets", type=int, default=2_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")))
    ap.add_argument("--no-4x", action="store_true", help="skip the 4x file (memory flatness)")
    ap.add_argument(
        "--record",
        action="store_true",
        help="write the figures into benchmarks/RESULTS.md (replaces its section)",
    )
    args = ap.parse_args()
    tshark = shutil.which("tshark")
    tcpdoctor = [sys.executable, "-m", "tcpdoctor.cli", "pcap"]
    work = args.dir / f"tdbench-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    try:
        f1 = work / "http-1x.pcap"
        t = time.perf_counter()
        n1, c1 = write_capture(f1, args.packets)
        size1 = f1.stat().st_size
        print(
            f"wrote {f1}: {n1:,} packets, {c1:,} connections, {size1 / 1e6:.0f} MB in {time.perf_counter() - t:.1f}s"
        )
        full = [*tcpdoctor, str(f1), "--format", "json", "--fail-on", "never"]
        tcp_only = [*full, "--tcp-only"]
        measure(tcp_only)  # warm the numba cache
        runs: dict[str, list[Run]] = {"full": [], "tcp-only": [], "tshark": []}
        for i in range(args.runs):
            for name, cmd in (
                ("full", full),
                ("tshark", [tshark, "-n", "-r", str(f1), "-q", "-z", "conv,tcp"] if tshark else None),
                ("tcp-only", tcp_only),
            ):
                if cmd is None:
                    continue
                runs[name].append(measure(cmd))
                print(
                    f"  run {i + 1}: {name:9} {runs[name][-1].seconds:.2f}s {runs[name][-1].max_rss_mb:.0f} MB",
                    flush=True,
                )

        def med(name: str) -> tuple[float, float]:
            return (
                statistics.median(r.seconds for r in runs[name]),
                statistics.median(r.max_rss_mb for r in runs[name]),
            )

        lines = [
            f"capture: {n1:,} packets, {c1:,} connections, {size1 / 1e6:.0f} MB (synthetic HTTP/1.1, "
            "3% RST, 2% retransmission, 1% SYN timeout)",
        ]
        labels = {
            "full": "`tcpdoctor pcap F --format json` (TCP + HTTP/TLS app layer)",
            "tcp-only": "`tcpdoctor pcap F --format json --tcp-only`",
            "tshark": "`tshark -r F -q -z conv,tcp`",
        }
        for name in ("full", "tcp-only", "tshark"):
            if runs[name]:
                sec, rss = med(name)
                lines.append(
                    f"{labels[name]}: {n1 / sec:,.0f} packets/s ({sec:.2f} s; runs "
                    + ", ".join(f"{r.seconds:.2f}" for r in runs[name])
                    + f" s), peak RSS {rss:.0f} MB"
                )
        if runs["tshark"]:
            th = med("tshark")[0]
            lines.append(
                f"ratio to tshark's packets/s: full {th / med('full')[0]:.2f}x, --tcp-only {th / med('tcp-only')[0]:.2f}x"
            )
        if not args.no_4x:
            f4 = work / "http-4x.pcap"
            f1.unlink()
            n4, _ = write_capture(f4, args.packets * 4, seed=11)
            size4 = f4.stat().st_size / 1e6
            for name, extra in (("tcp-only", ["--tcp-only"]), ("full", [])):
                r4 = measure([*tcpdoctor, str(f4), "--format", "json", "--fail-on", "never", *extra])
                lines.append(
                    f"4x file ({n4:,} packets, {size4:.0f} MB), {name}: {n4 / r4.seconds:,.0f} packets/s, "
                    f"peak RSS {r4.max_rss_mb:.0f} MB (1x: {med(name)[1]:.0f} MB)"
                )
                print(lines[-1], flush=True)
        print("\n".join(lines))
        if args.record:
            record(args, lines)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
