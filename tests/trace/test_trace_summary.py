"""The command's summary and live lines, from recorded evidence (no kernel needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tcpdoctor.commands.trace import event_line, summary_dict
from tcpdoctor.evidence.trace import Attribution, NamespaceCounters, TraceEvent, TraceEvidence


def test_summary_counts_reasons_and_latencies() -> None:
    events = [
        TraceEvent(
            "connect", 0.1 * i, "10.0.0.9", 40000 + i, "10.0.0.2", 80, "ESTABLISHED", micros=1000 * (i + 1)
        )
        for i in range(10)
    ]
    events.append(
        TraceEvent("connect", 1.5, "10.0.0.9", 41000, "10.0.0.2", 81, "CLOSE", reason="failed", micros=50)
    )
    events.append(
        TraceEvent("reset_sent", 2.0, "10.0.0.2", 81, "10.0.0.9", 41000, "NONE", reason="NO_SOCKET")
    )
    ns = NamespaceCounters(
        1, "host", before={"ListenOverflows": 1, "OutRsts": 5}, after={"ListenOverflows": 1, "OutRsts": 6}
    )
    s = summary_dict(TraceEvidence(events=events, duration=3.0, what=("connect", "resets"), namespaces=[ns]))
    assert s["events"] == {"connect": 11, "reset_sent": 1}
    assert s["reasons"] == {"connect:failed": 1, "reset_sent:NO_SOCKET": 1}
    # failed connects are not latencies
    assert s["connect_ms"] == {"count": 10, "p50": 6.0, "p90": 10.0, "p99": 10.0, "max": 10.0}
    assert s["lifetime_ms"] is None
    assert s["namespaces"] == [
        {
            "netns": 1,
            "label": "host",
            "delta": {"OutRsts": 1},
            "time_wait": {"before": 0, "after": 0, "max": 0},
        }
    ]


def test_live_line_names_owner_or_refused_peer() -> None:
    e = TraceEvent(
        "reset_sent", 1.25, "10.0.0.2", 81, "10.0.0.9", 41000, "NONE", reason="NO_SOCKET", has_socket=False
    )
    assert event_line(e).endswith("no socket")
    e.peer = Attribution(pid=77, comm="curl")
    line = event_line(e)
    assert "10.0.0.2:81 -> 10.0.0.9:41000" in line and "NO_SOCKET" in line
    assert line.endswith("refused peer pid 77 curl")


def test_cgroup_option_takes_ids_and_paths(tmp_path: Path) -> None:
    from tcpdoctor.commands.trace import cgroup_ids
    from tcpdoctor.model import InputError

    leaf = tmp_path / "kubepods.slice" / "pod.slice"
    leaf.mkdir(parents=True)
    ids = cgroup_ids(["12345", str(leaf)])
    assert ids == frozenset({12345, leaf.stat().st_ino})  # a cgroup's id is its directory's inode
    with pytest.raises(InputError, match="no such cgroup"):
        cgroup_ids(["kubepods.slice/does-not-exist-" + tmp_path.name])
