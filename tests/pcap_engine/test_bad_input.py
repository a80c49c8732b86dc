"""Bad input: a clear message with the byte offset or frame, what was readable is analysed,
exit 2 only when nothing was; never a traceback (fuzzed with hypothesis on the real captures)."""

from __future__ import annotations

import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tcpdoctor.cli import app
from tcpdoctor.model import InputError
from tcpdoctor.sources.pcap.tracker import CaptureAnalysis

SHARED = Path(__file__).resolve().parents[3] / "shared" / "captures"
REAL = sorted(SHARED.glob("*.pcap*"))
REFUSE = SHARED / "cs_http-client-refuse.pcap"
ESPN = SHARED / "cs_http_espn_fail.pcapng"


def cli(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tcpdoctor.cli", "pcap", str(path), "--fail-on", "never"],
        capture_output=True,
        text=True,
        timeout=120,
    )


def record_offsets(data: bytes) -> list[int]:
    pos, out = 24, []
    while pos + 16 <= len(data):
        out.append(pos)
        pos += 16 + struct.unpack_from("<I", data, pos + 8)[0]
    return out


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "byte offset 0: empty"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "byte offset 0: not a pcap or pcapng file"),
    ],
    ids=["empty", "wrong-magic"],
)
def test_nothing_readable_exits_2_with_one_line(tmp_path: Path, content: bytes, expected: str) -> None:
    f = tmp_path / "bad.pcap"
    f.write_bytes(content)
    out = cli(f)
    assert out.returncode == 2
    assert expected in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert "Traceback" not in out.stderr and out.stdout == ""


def test_unknown_link_type_exits_2(tmp_path: Path, captures_dir: Path) -> None:
    data = bytearray(REFUSE.read_bytes())
    struct.pack_into("<I", data, 20, 147)
    f = tmp_path / "lt.pcap"
    f.write_bytes(bytes(data))
    out = cli(f)
    assert out.returncode == 2 and "byte offset 20: link type 147 is not supported" in out.stderr


def test_truncated_file_analyses_what_was_read(tmp_path: Path, captures_dir: Path) -> None:
    data = REFUSE.read_bytes()
    cut = record_offsets(data)[7] + 40  # inside record 8
    f = tmp_path / "t.pcap"
    f.write_bytes(data[:cut])
    out = cli(f)
    assert out.returncode == 0, out.stderr
    assert "7 packets" in out.stdout
    assert f"frame 8, byte offset {record_offsets(data)[7]}: file truncated" in out.stdout


def test_absurd_record_length_is_skipped_and_reading_resumes(tmp_path: Path, captures_dir: Path) -> None:
    data = bytearray(REFUSE.read_bytes())
    offsets = record_offsets(bytes(data))
    struct.pack_into("<I", data, offsets[9] + 8, 0x7FFFFFFF)
    f = tmp_path / "a.pcap"
    f.write_bytes(bytes(data))
    ev = CaptureAnalysis(str(f)).run()
    assert ev.stats.packets == 28  # only the damaged record is lost
    (problem,) = ev.stats.problems
    assert problem.offset == offsets[9] and problem.frame == 10
    assert sorted(c.state for c in ev.connections) == ["RSTO", "RSTR"]


def test_garbage_in_the_middle_of_pcapng(tmp_path: Path, captures_dir: Path) -> None:
    data = bytearray(ESPN.read_bytes())
    mid = len(data) // 2
    data[mid:mid] = b"\xde\xad\xbe\xef" * 50
    f = tmp_path / "g.pcapng"
    f.write_bytes(bytes(data))
    ev = CaptureAnalysis(str(f)).run()
    assert 560 <= ev.stats.packets < 569
    assert ev.stats.problems and ev.stats.problems[0].offset is not None
    assert ev.stats.problems[0].offset <= mid + 8
    assert ev.stats.connections == 16


def _analyse(data: bytes) -> None:
    with tempfile.NamedTemporaryFile(suffix=".pcap") as fh:
        fh.write(data)
        fh.flush()
        try:
            analysis = CaptureAnalysis(fh.name)
            ev = analysis.run()
        except InputError as exc:
            assert "byte offset" in str(exc) or "no packet" in str(exc)
            return
        st_ = ev.stats
        assert st_.tcp_packets <= st_.packets
        assert sum(c.c2s.packets + c.s2c.packets for c in ev.connections) <= st_.tcp_packets
        for p in st_.problems:
            assert p.offset is not None or p.frame is not None or "link type" in p.message


mutation = st.tuples(
    st.sampled_from(REAL),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=20),  # byte flips
    st.one_of(st.none(), st.integers(0, 10**6)),  # truncation
    st.one_of(st.none(), st.tuples(st.integers(0, 10**6), st.binary(min_size=1, max_size=300))),  # insertion
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutation)
def test_fuzz_mutated_real_captures_never_crash(
    m: tuple[Path, list[tuple[int, int]], int | None, object],
) -> None:
    path, flips, cut, insert = m
    data = bytearray(path.read_bytes())
    for pos, value in flips:
        data[pos % len(data)] = value
    if insert is not None:
        pos, blob = insert  # type: ignore[misc]
        data[pos % len(data) : pos % len(data)] = blob
    if cut is not None:
        del data[cut % (len(data) + 1) :]
    _analyse(bytes(data))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutation)
def test_fuzz_the_command_exits_0_1_or_2(m: tuple[Path, list[tuple[int, int]], int | None, object]) -> None:
    path, flips, cut, _ = m
    data = bytearray(path.read_bytes())
    for pos, value in flips:
        data[pos % len(data)] = value
    if cut is not None:
        del data[cut % (len(data) + 1) :]
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "m.pcapng"
        f.write_bytes(bytes(data))
        for fmt in ("text", "json"):
            result = CliRunner().invoke(app, ["pcap", str(f), "-f", fmt])
            assert result.exception is None or isinstance(result.exception, (InputError, SystemExit)), (
                result.exception
            )
            if isinstance(result.exception, InputError):
                assert "byte offset" in str(result.exception) or "no packet" in str(result.exception)
            else:
                assert result.exit_code in (0, 1)


def test_pcapng_cut_inside_an_interface_block_exits_2_with_the_offset(
    tmp_path: Path, captures_dir: Path
) -> None:
    f = tmp_path / "cut.pcapng"
    f.write_bytes((SHARED / "cs_tcp_handshake.pcapng").read_bytes()[:100])
    out = cli(f)
    assert out.returncode == 2 and "no packet could be read" in out.stderr and "byte offset" in out.stderr
