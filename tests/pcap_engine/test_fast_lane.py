"""The fast lane: clean connections beyond keep_clean come out as JSON text (a chunk of objects at a
time), identical to the records' objects (times compared rounded to the microsecond, as written)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tcpdoctor.evidence.pcap import Connection
from tcpdoctor.sources.pcap import tracker
from tcpdoctor.sources.pcap.app import AppAnalyzerFactory, app_result, probe_ledger
from tcpdoctor.sources.pcap.tracker import CaptureAnalysis, ConnectionLines

from . import writer as w


def _objects(items: list[Any]) -> list[dict[str, Any]]:
    """The connection objects of the lane's chunks (each chunk's count and states checked)."""
    out = []
    for blob in items:
        if isinstance(blob, ConnectionLines):
            objs = json.loads("[" + blob.json + "]")
            states: dict[str, int] = {}
            for o in objs:
                states[o["state"]] = states.get(o["state"], 0) + 1
            assert blob.count == len(objs) and blob.states == states
            out += objs
    return out


def _micro(obj: dict[str, Any]) -> dict[str, Any]:
    return {**obj, "start": round(obj["start"], 6), "duration": round(obj["duration"], 6)}


def test_lines_equal_the_records_json_and_totals_stay_exact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tracker, "BUILD_CHUNK", 16)  # the lane opens between chunks of records
    recs: list[w.Record] = []
    for i in range(300):
        conv = w.http_conversation(
            "10.0.0.1" if i % 2 else "fd00::1",
            "10.0.0.2" if i % 2 else "fd00::2",
            cport=20000 + i,
            start=1_700_000_000.0 + i * 0.0137,
            isn_c=i * 7919,
            v6=not i % 2,
        )
        recs += [w.Record(ts, w.ether(ip)) for ts, ip in conv]
    refused = [
        (1_700_000_009.0, w.ipv4("10.0.0.5", "10.0.0.6", w.tcp(51000, 9090, 7, 0, w.SYN))),
        (1_700_000_009.001, w.ipv4("10.0.0.6", "10.0.0.5", w.tcp(9090, 51000, 0, 8, w.RST | w.ACK))),
    ]
    recs += [w.Record(ts, w.ether(ip)) for ts, ip in refused]
    f = tmp_path / "many.pcap"
    w.write_pcap(str(f), sorted(recs, key=lambda r: r.ts), 1)

    full = {c.id: c.to_dict() for c in CaptureAnalysis(str(f)).connections()}
    fast = CaptureAnalysis(str(f), keep_clean=5, lite=True)
    items = list(fast.stream())
    lines = _objects(items)
    records = [c for c in items if isinstance(c, Connection)]
    assert len(lines) > 250 and len(lines) + len(records) == len(full) == 301
    assert {c.state for c in records} >= {"REJ"}  # not clean: always a full record for the rules
    assert len({line["id"] for line in lines} | {c.id for c in records}) == 301
    for line in lines:
        assert _micro(line) == _micro(full[line["id"]])
    for rec in records:
        assert rec.to_dict() == full[rec.id]
    ev = fast.evidence
    assert ev.states == {"SF": 300, "REJ": 1} and ev.stats.connections == 301
    assert ev.clean_dropped == 295 and len(ev.connections) == 6  # 5 clean kept + the REJ


def test_quiet_http_connections_take_the_lane_probes_and_unanswered_ones_do_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the app layer on, a clean exchange the app layer keeps nothing from becomes a line;
    a kubelet probe (counted in the ledger) and an unanswered request stay full records."""
    monkeypatch.setattr(tracker, "BUILD_CHUNK", 16)
    recs: list[w.Record] = []
    for i in range(120):
        probe = i % 10 == 0
        conv = w.http_conversation(
            cport=20000 + i,
            start=1_700_000_000.0 + i * 0.0137,
            isn_c=i * 7919,
            user_agent=b"kube-probe/1.30" if probe else b"Go-http-client/1.1",
        )
        recs += [w.Record(ts, w.ether(ip)) for ts, ip in conv]
    # an SF connection whose request got no response: noteworthy for the app layer
    unanswered = w.http_conversation(cport=30000, start=1_700_000_003.0, user_agent=b"curl/8")
    del unanswered[4]  # the response segment
    recs += [w.Record(ts, w.ether(ip)) for ts, ip in unanswered]
    f = tmp_path / "http.pcap"
    w.write_pcap(str(f), sorted(recs, key=lambda r: r.ts), 1)

    full = {c.id: c for c in CaptureAnalysis(str(f), [AppAnalyzerFactory()]).connections()}
    fast = CaptureAnalysis(str(f), [AppAnalyzerFactory()], keep_clean=5, lite=True)
    items = list(fast.stream())
    lines = _objects(items)
    records = {c.id: c for c in items if isinstance(c, Connection)}
    assert len(lines) + len(records) == len(full) == 121
    for line in lines:
        assert _micro(line) == _micro(full[line["id"]].to_dict())
        assert app_result(full[line["id"]]) is None  # nothing was dropped from the rules' view
    probe_ids = {c.id for c in full.values() if c.client.port % 10 == 0 and c.client.port < 30000}
    unanswered_id = next(c.id for c in full.values() if c.client.port == 30000)
    assert probe_ids and probe_ids <= set(records) and unanswered_id in records
    # the lane opens after the first chunk of 16 records: every quiet connection after it is a line
    assert {c["id"] for c in lines} == {i for i in full if i > 16} - probe_ids - {unanswered_id}
    result = app_result(records[unanswered_id])
    assert result is not None and result.exchanges[0].response is None
    ledger = probe_ledger(fast.evidence)
    assert ledger is not None and len(ledger.records) == len(probe_ids) == 12
