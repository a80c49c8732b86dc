"""The capture kernels compiled ahead of time (`make install`) are the JIT kernels, loaded faster.

The same capture analysed by a process using the built extension and by one forced onto numba's
JIT (`TCPDOCTOR_JIT=1`) must write the same report; a stale build (kernel sources edited since)
must never be used.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tcpdoctor.sources.pcap import _jit

ROOT = Path(__file__).resolve().parents[2]


def _report(capture: Path, *, jit: bool) -> tuple[dict[str, Any], bool]:
    env = {k: v for k, v in os.environ.items() if k != "TCPDOCTOR_JIT"}
    if jit:
        env["TCPDOCTOR_JIT"] = "1"
    code = (
        "import sys, runpy; from tcpdoctor.sources.pcap import _jit;"
        "sys.stderr.write('AOT=%s\\n' % (_jit.aot is not None));"
        "sys.argv = ['tcpdoctor', 'pcap', sys.argv[1], '--format', 'json', '--fail-on', 'never'];"
        "runpy.run_module('tcpdoctor.cli', run_name='__main__')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(capture)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=True,
    )
    report = json.loads(out.stdout)
    report["stats"].pop("seconds")
    report["stats"].pop("packets_per_second")
    return report, "AOT=True" in out.stderr


def test_built_kernels_write_the_same_report_as_the_jit(captures_dir: Path, require: Any) -> None:
    require(_jit.aot is not None, "the ahead-of-time kernels are not built (make install builds them)")
    for name in ("cs_http_espn_fail.pcapng", "cs_tcp_zerowindowrecovery.pcapng"):
        built, used_aot = _report(captures_dir / name, jit=False)
        jitted, used_jit_aot = _report(captures_dir / name, jit=True)
        assert used_aot and not used_jit_aot
        assert built == jitted, name
    demo = ROOT / "examples" / "livefeed" / "capture" / "livefeed.pcap"
    built, _ = _report(demo, jit=False)
    jitted, _ = _report(demo, jit=True)
    assert built == jitted and built["findings"]


def test_a_stale_or_refused_build_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TCPDOCTOR_JIT", raising=False)
    assert _jit.load(expected="0" * 64) is None  # kernel sources changed since the build
    monkeypatch.setenv("TCPDOCTOR_JIT", "1")
    assert _jit.load() is None


def test_the_stamp_follows_every_kernel_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _jit.KERNEL_SOURCES:
        (tmp_path / name).write_bytes((_jit.HERE / name).read_bytes())
    monkeypatch.setattr(_jit, "HERE", tmp_path)
    before = _jit.source_hash()
    for name in _jit.KERNEL_SOURCES:
        original = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(original + b"\n# edited\n")
        assert _jit.source_hash() != before, name
        (tmp_path / name).write_bytes(original)
    assert _jit.source_hash() == before
