"""`tcpdoctor trace` command line: one-line errors (exit 2), jsonl events + findings, --aggregate."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tcpdoctor.cli import app
from tcpdoctor.model import InputError
from tcpdoctor.sources.ebpf import runner
from tcpdoctor.sources.ebpf.aggregate import Aggregator
from tcpdoctor.sources.ebpf.programs import ProgramSpec

TCPDOCTOR = Path(sys.executable).parent / "tcpdoctor"


def invoke(*args: str) -> BaseException | None:
    result = CliRunner().invoke(app, ["trace", *args])
    return result.exception


def test_help_teaches() -> None:
    result = CliRunner().invoke(app, ["trace", "--help"])
    assert result.exit_code == 0
    for word in ("--what", "--aggregate", "--pod", "Examples", "jsonl"):
        assert word in result.stdout


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["--port", "http"], "--port 'http'"),
        (["--port", "70000"], "--port 70000"),
        (["--what", "resets,everything"], "--what everything"),
        (["--format", "xml"], "--format 'xml'"),
        (["--aggregate", "5", "--pid", "1"], "--aggregate counts in the kernel"),
        (["--duration", "-1"], "--duration"),
        (
            ["--netns", "tdtest-no-such-namespace-x9"],
            "--netns tdtest-no-such-namespace-x9: no such network namespace",
        ),
    ],
)
def test_bad_options(args: list[str], text: str) -> None:
    exc = invoke(*args)
    assert isinstance(exc, InputError) and text in str(exc)


def test_bpftrace_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner.shutil, "which", lambda name: None)
    exc = invoke("--duration", "1")
    assert isinstance(exc, InputError) and "apt-get install bpftrace" in str(exc)


def test_not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner.shutil, "which", lambda name: "/usr/bin/bpftrace")
    monkeypatch.setattr(runner.os, "geteuid", lambda: 1000)
    exc = invoke("--duration", "1")
    assert isinstance(exc, InputError) and "needs root" in str(exc)


def test_exit_2_with_one_line(tmp_path: Path) -> None:
    """Through the real entry point: bad input is one line on stderr and exit status 2."""
    proc = subprocess.run(
        [str(TCPDOCTOR), "trace", "--port", "notaport"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("tcpdoctor: --port")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def knock(port: int, stop: threading.Event) -> None:
    while not stop.is_set():
        with socket.socket() as c:
            try:
                c.connect(("127.0.0.1", port))
            except OSError:
                pass
        stop.wait(0.2)


@pytest.mark.root
@pytest.mark.bpftrace
def test_jsonl_events_findings_and_exit_code(bpftrace: str) -> None:
    """Events stream as they happen; SIGINT ends the trace with findings and the summary, even in a
    process that inherited SIGINT ignored (a background job of a shell, a benchmark driver)."""
    if not Path("/sys/kernel/tracing/events").is_dir():
        subprocess.run(["mount", "-t", "tracefs", "tracefs", "/sys/kernel/tracing"], check=False)
    port = closed_port()
    proc = subprocess.Popen(
        [str(TCPDOCTOR), "trace", "--what", "resets,connect", "--port", str(port), "--format", "jsonl",
         "--fail-on", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )  # fmt: skip
    lines: list[dict[str, object]] = []
    first = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(json.loads(line))
            first.set()

    reader = threading.Thread(target=read)
    reader.start()
    stop = threading.Event()
    knocker = threading.Thread(target=knock, args=(port, stop))
    knocker.start()
    try:
        assert first.wait(120), "no event within 120 s"
        time.sleep(0.5)
    finally:
        stop.set()
        knocker.join()
        proc.send_signal(signal.SIGINT)
        returncode = proc.wait(timeout=60)
        reader.join()
    resets = [o for o in lines if o["type"] == "reset_sent"]
    assert resets and all(o["reason"] == "NO_SOCKET" and o["src"] == f"127.0.0.1:{port}" for o in resets)
    assert all(o["has_socket"] is False for o in resets)
    findings = [o for o in lines if o["type"] == "finding"]
    assert any(f["rule"] == "TRC001" and "NO_SOCKET" in str(f["message"]) for f in findings)
    assert not any(f["rule"] == "TRC002" for f in findings)  # drops were not asked for
    summary = lines[-1]
    assert summary["type"] == "summary"
    assert summary["events"]["reset_sent"] == len(resets)  # type: ignore[index]
    assert returncode == 1  # TRC001 is a warning and --fail-on warning


@pytest.mark.root
@pytest.mark.bpftrace
def test_aggregate_counts_in_kernel(bpftrace: str) -> None:
    port = closed_port()
    stop = threading.Event()
    knocker = threading.Thread(target=knock, args=(port, stop))
    seen: list[int] = []
    with Aggregator(ProgramSpec(what=("resets", "connect"), ports=(port,), aggregate_every=1)) as agg:
        knocker.start()
        deadline = time.monotonic() + 20
        for snap in agg.snapshots():
            seen.append(snap.value("tcpdoctor_tcp_resets_sent_total", reason="NO_SOCKET"))
            if (len(seen) >= 2 and seen[-1] > 0) or time.monotonic() > deadline:
                agg.close()
        failed = snap.value("tcpdoctor_tcp_connects_total", result="failed")
    stop.set()
    knocker.join()
    assert seen[-1] > 0 and seen == sorted(seen)  # cumulative counters
    assert failed >= seen[-1] - 1  # each knock is one failed connect and one reset
    assert snap.value("tcpdoctor_tcp_connects_total", result="established") == 0
    assert agg.runner is not None and agg.runner.proc is not None and agg.runner.proc.poll() is not None
