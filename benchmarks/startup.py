"""Start-up time of `tcpdoctor` commands, two commits side by side, with and without .pyc.

Each commit is exported (`git archive`) to a temporary tree, once as it is and once byte-compiled
as `make install` does (`python -m compileall -q src`); every tree runs with
``PYTHONPATH=<tree>/src`` and this interpreter. Rounds are interleaved (each round runs every
command in every tree once) so that the load of a shared machine hits all trees alike; the medians
of wall time and of user+sys CPU time (``os.wait4``) are printed.

    .venv/bin/python benchmarks/startup.py                       # b02e5ef (before #6's start-up work) vs HEAD
    .venv/bin/python benchmarks/startup.py --refs HEAD~1,HEAD --rounds 9
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CAPTURE = ROOT.parent / "shared" / "captures" / "cs_tcp_handshake.pcapng"
EXAMPLE = ROOT / "examples" / "livefeed"


def commands() -> dict[str, list[str]]:
    tiny = str(CAPTURE) if CAPTURE.is_file() else str(next(EXAMPLE.glob("*.pcap*")))
    return {
        "pcap not-a-capture --format json": ["pcap", "/etc/hostname", "--format", "json"],
        "pcap tiny --format json": ["pcap", tiny, "--format", "json"],
        "pcap tiny (text)": ["pcap", tiny],
        "pcap tiny --state BOGUS": ["pcap", tiny, "--state", "BOGUS"],
        "--help": ["--help"],
        "--version": ["--version"],
        "rule PRB001": ["rule", "PRB001"],
    }


def export(ref: str, into: Path, compiled: bool) -> Path:
    archive = subprocess.run(
        ["git", "archive", ref, "src", "docs"], cwd=ROOT, capture_output=True, check=True
    )
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    if compiled:
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        subprocess.run([sys.executable, "-m", "compileall", "-q", "src"], cwd=into, env=env, check=True)
    return into / "src"


def run(src: Path, args: list[str]) -> tuple[float, float, int]:
    env = dict(os.environ, PYTHONPATH=str(src), PYTHONDONTWRITEBYTECODE="1")
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tcpdoctor.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=tempfile.gettempdir(),
    )
    _, status, usage = os.wait4(proc.pid, 0)
    return time.perf_counter() - start, usage.ru_utime + usage.ru_stime, os.waitstatus_to_exitcode(status)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--refs", default="b02e5ef,HEAD", help="two commits, before,after")
    parser.add_argument("--rounds", type=int, default=5)
    opts = parser.parse_args()
    refs = opts.refs.split(",")
    cmds = commands()
    with tempfile.TemporaryDirectory(prefix="tdbench-startup-") as tmp:
        trees: dict[str, Path] = {}
        for ref in refs:
            for compiled in (False, True):
                name = f"{ref}{' +pyc' if compiled else ''}"
                trees[name] = export(ref, Path(tmp) / name.replace(" ", "_").replace("/", "_"), compiled)
                run(trees[name], cmds["pcap tiny --format json"])  # numba's cache for this tree
        results: dict[tuple[str, str], list[tuple[float, float, int]]] = {}
        for _ in range(opts.rounds):
            for label, args in cmds.items():
                for name, src in trees.items():
                    results.setdefault((label, name), []).append(run(src, args))
    print(f"load average {os.getloadavg()[0]:.2f}; medians of {opts.rounds} interleaved runs: wall s / CPU s")
    print("| command | " + " | ".join(trees) + " |")
    print("|---" * (len(trees) + 1) + "|")
    for label in cmds:
        cells = []
        for name in trees:
            runs = results[(label, name)]
            wall = statistics.median(r[0] for r in runs)
            cpu = statistics.median(r[1] for r in runs)
            codes = sorted({r[2] for r in runs})
            cells.append(f"{wall:.2f} / {cpu:.2f}" + ("" if codes == [0] else f" (exit {codes})"))
        print(f"| `{label}` | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
