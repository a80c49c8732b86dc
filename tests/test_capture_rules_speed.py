"""The capture rules' shared index (rules/_capture.py ``index``): the rules visit only the connections
the index lists, so these tests check that it lists every connection a rule can report on, in the
capture's order, that it is never reused for other evidence, and that the findings are those of the
rules as they were before the index (git revision BEFORE_INDEX, loaded beside today's)."""

from __future__ import annotations

import dataclasses
import gc
import importlib.util
import shutil
import subprocess
import sys
import weakref
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tcpdoctor.evidence.pcap import (
    EVENT_KINDS,
    SYN_RETRANSMISSION,
    ZERO_WINDOW,
    Connection,
    Direction,
    DirectionStats,
    Endpoint,
    PcapEvidence,
)
from tcpdoctor.model import Finding
from tcpdoctor.rules import _capture as cap
from tcpdoctor.rules.registry import EvidenceBag, Rule, all_rules, run_rules
from tcpdoctor.sources.pcap.app import AppAnalyzerFactory
from tcpdoctor.sources.pcap.tracker import CaptureAnalysis, Engine

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = ROOT.parent / "shared" / "captures"
BEFORE_INDEX = "b02e5ef"  # the last revision whose capture rules walked every connection
SIDES = (Direction.CLIENT, Direction.SERVER)


def _benchmark_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "capture_rules_bench", ROOT / "benchmarks" / "capture_rules.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@cache
def _synthetic(directory: str) -> Path:
    """A capture of the pcap benchmark's kind: clean exchanges, resets, retransmissions, unanswered SYNs."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import pcap_throughput
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    path = Path(directory) / "synthetic.pcap"
    pcap_throughput.write_capture(path, 40_000, seed=11)
    return path


def _inputs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    found = sorted(p for p in CAPTURES.glob("*.pcap*")) if CAPTURES.is_dir() else []
    example = ROOT / "examples" / "livefeed" / "capture" / "livefeed.pcap"
    if example.is_file():
        found.append(example)
    found.append(_synthetic(str(tmp_path_factory.getbasetemp())))
    return found


def _analyse(path: Path, app_layer: bool) -> PcapEvidence:
    analysis = CaptureAnalysis(str(path), engine=Engine([AppAnalyzerFactory()] if app_layer else []))
    return analysis.run()


@pytest.fixture(scope="module")
def evidences(tmp_path_factory: pytest.TempPathFactory) -> list[PcapEvidence]:
    return [_analyse(p, app) for p in _inputs(tmp_path_factory) for app in (True, False)]


def _is_ordered_subset(part: Sequence[Connection], whole: Sequence[Connection]) -> bool:
    position = {id(c): i for i, c in enumerate(whole)}
    places = [position.get(id(c), -1) for c in part]
    return -1 not in places and places == sorted(places) and len(set(places)) == len(places)


def test_the_captures_exercise_the_index(evidences: list[PcapEvidence]) -> None:
    """The inputs below are not trivially empty: each list of the index is non-empty somewhere."""
    indexes = [cap.index(ev) for ev in evidences]
    assert any(idx.retransmitting for idx in indexes)
    assert any(idx.reset for idx in indexes)
    assert any(idx.app_connections for idx in indexes)
    assert any(idx.with_event(ZERO_WINDOW) for idx in indexes)
    assert any(idx.with_event(SYN_RETRANSMISSION) for idx in indexes)


def test_index_lists_every_connection_a_rule_can_report_on(evidences: list[PcapEvidence]) -> None:
    for ev in evidences:
        idx = cap.index(ev)
        conns = ev.connections
        for kind in EVENT_KINDS:
            assert idx.with_event(kind) == ev.with_event(kind), (ev.path, kind)
        assert _is_ordered_subset(idx.retransmitting, conns)
        retransmitting = {id(c) for c in idx.retransmitting}
        for c in conns:
            for side in SIDES:
                lost, windowed = cap.split_retransmissions(c, side)
                if lost or windowed:
                    assert id(c) in retransmitting, (ev.path, c.name)
        assert idx.reset == [c for c in conns if c.reset_by is not None]
        assert all(c.reset_by is not None for c in conns if cap.idle_reset(c) is not None)
        assert list(idx.reset_verdicts()) == [(c, cap.idle_reset(c), cap.race(c)) for c in idx.reset]
        assert [c for c in conns if cap.race(c) is not None] == [
            c for c in idx.app_connections if cap.race(c) is not None
        ]
        expected_app = [(c, r) for c in conns if (r := cap.app(c)) is not None]
        assert [(c, r) for c, r in idx.with_app()] == expected_app
        assert idx.location == cap.location(ev)


def test_index_is_built_once_per_evidence_and_never_reused_for_another(evidences: list[PcapEvidence]) -> None:
    ev = next(e for e in evidences if cap.index(e).reset)
    assert cap.index(ev) is cap.index(ev)
    other = dataclasses.replace(ev, path=ev.path + ".copy", connections=list(ev.connections))
    assert cap.index(other) is not cap.index(ev)
    # a stale index would carry the first evidence's path into the other's findings
    for source in (ev, other):
        bag = EvidenceBag()
        bag.add("pcap", source)
        paths = {f.location.path for f in run_rules(bag, _capture_rules()) if f.location is not None}
        assert paths == {source.path}


def _capture_rules() -> list[Rule]:
    return [r for r in all_rules() if r.id.startswith("PCP")]


def _conn(number: int, client: Endpoint, server: Endpoint, start: float, **fields: object) -> Connection:
    conn = Connection(number, client, server, start, start + 0.01, 10 * number, 10 * number + 5)
    for name, value in fields.items():
        setattr(conn, name, value)
    return conn


def _injected_reset(number: int) -> Connection:
    """A connection whose server-side RST has another TTL than the server's packets (PCP006)."""
    server = DirectionStats(packets=4, rsts=1, ttl=64, rst_ttl=58)
    return _conn(
        number,
        Endpoint("10.0.0.1", 40000 + number),
        Endpoint("10.0.0.2", 8080),
        100.0 + number,
        state="RSTR",
        s2c=server,
        reset_by="server",
        reset_frame=10 * number + 5,
        reset_ts=100.0 + number,
        reset_phase="closing",
    )


def _findings(ev: PcapEvidence, rule_id: str) -> list[Finding]:
    bag = EvidenceBag()
    bag.add("pcap", ev)
    return [f for f in run_rules(bag, _capture_rules()) if f.rule == rule_id]


def test_a_connection_added_after_a_run_is_seen_by_the_next_run() -> None:
    ev = PcapEvidence(path="added.pcap", connections=[_injected_reset(1)])
    assert len(_findings(ev, "PCP006")) == 1
    ev.connections.append(_injected_reset(2))
    assert [f.subject.connection for f in _findings(ev, "PCP006")] == [c.name for c in ev.connections]
    ev.connections = [_injected_reset(3)]  # another list of the same length as before minus one
    assert [f.subject.connection for f in _findings(ev, "PCP006")] == [ev.connections[0].name]


def test_a_new_list_of_the_same_length_gets_a_new_index() -> None:
    ev = PcapEvidence(path="relisted.pcap", connections=[_injected_reset(1)])
    assert len(_findings(ev, "PCP006")) == 1
    for _ in range(3):  # a freed list's id may come back for the next one: identity, not id, counts
        ev.connections = [_conn(7, Endpoint("10.0.0.1", 1), Endpoint("10.0.0.2", 2), 1.0)]
        assert _findings(ev, "PCP006") == []
        ev.connections = [_injected_reset(2)]
        assert len(_findings(ev, "PCP006")) == 1


def test_the_index_goes_with_its_evidence() -> None:
    ev = PcapEvidence(path="gone.pcap", connections=[_injected_reset(1)])
    built = weakref.ref(cap.index(ev))
    del ev
    gc.collect()
    assert built() is None  # nothing keeps the connections of a dropped evidence alive


def test_four_tuple_reuse_groups_by_endpoints_in_first_seen_order() -> None:
    a, b = Endpoint("10.0.0.1", 40001), Endpoint("10.0.0.2", 80)
    c, d = Endpoint("fd00::1", 40001), Endpoint("fd00::2", 80)
    conns = [
        _conn(1, c, d, 5.0, state="SF"),
        _conn(2, a, b, 1.0, state="SF"),
        _conn(3, Endpoint("10.0.0.9", 40001), b, 2.0, state="SF"),  # another client: not a reuse
        _conn(4, c, d, 50.0, state="SF"),  # 45 s after #1: reuse within TIME_WAIT
        _conn(5, a, b, 90.0, state="REJ"),  # 89 s after #2: too late to count
        _conn(6, a, b, 3.0, state="S0"),  # seen last but started 2 s after #2 ended
    ]
    found = _findings(PcapEvidence(path="reuse.pcap", connections=conns), "PCP010")
    # groups come in the order their 4-tuple was first seen (#1's, then #2's), each sorted by start
    assert [f.subject.connection for f in found] == [conns[3].name, conns[5].name]
    assert "it completed normally" in found[0].message
    assert "its SYN was never answered" in found[1].message


_ipv4 = st.ip_addresses(v=4).map(str)
_ipv6 = st.ip_addresses(v=6).map(str)
_endpoint = st.builds(Endpoint, st.one_of(_ipv4, _ipv6), st.integers(0, 65535))


@given(st.lists(st.tuples(_endpoint, _endpoint), min_size=2, max_size=6))
def test_endpoint_key_partitions_like_the_text_key(pairs: list[tuple[Endpoint, Endpoint]]) -> None:
    conns = [_conn(i + 1, client, server, float(i)) for i, (client, server) in enumerate(pairs)]
    for x in conns:
        for y in conns:
            assert (cap.endpoint_key(x) == cap.endpoint_key(y)) == (cap.tuple_key(x) == cap.tuple_key(y))


_small_endpoint = st.builds(
    Endpoint, st.sampled_from(["10.0.0.1", "10.0.0.2", "fd00::1", "fd00::1:2"]), st.sampled_from([80, 8080])
)


def _grouped_by_text(conns: list[Connection]) -> list[list[Connection]]:
    groups: dict[tuple[str, str], list[Connection]] = {}
    for c in conns:
        groups.setdefault(cap.tuple_key(c), []).append(c)
    return [g for g in groups.values() if len(g) > 1]


@given(
    st.lists(st.tuples(_small_endpoint, _small_endpoint), max_size=12),
    st.sampled_from([cap.tuple_digest, lambda c: 0, lambda c: c.client.port % 3]),
)
def test_repeated_tuples_groups_as_the_text_key_even_when_digests_collide(
    pairs: list[tuple[Endpoint, Endpoint]], digest: Callable[[Connection], int]
) -> None:
    conns = [_conn(i + 1, client, server, float(i)) for i, (client, server) in enumerate(pairs)]
    assert cap.repeated_tuples(conns, digest) == _grouped_by_text(conns)


def _old_rules_available() -> str | None:
    if shutil.which("git") is None:
        return "git is not installed"
    done = subprocess.run(
        ["git", "cat-file", "-e", f"{BEFORE_INDEX}^{{commit}}"], cwd=ROOT, capture_output=True, check=False
    )
    return (
        None if done.returncode == 0 else f"revision {BEFORE_INDEX} is not in this checkout (shallow clone?)"
    )


def test_same_findings_as_the_rules_that_walked_every_connection(evidences: list[PcapEvidence]) -> None:
    missing = _old_rules_available()
    if missing:
        pytest.skip(missing)
    old = _benchmark_module().rules_at(BEFORE_INDEX)
    assert {r.id for r in old} == {r.id for r in _capture_rules()}
    total = 0
    for ev in evidences:
        now = [f.to_dict() for f in run_rules(_bag(ev), _capture_rules())]
        before = [f.to_dict() for f in run_rules(_bag(ev), old)]
        assert now == before, ev.path
        total += len(now)
    assert total > 0


def _bag(ev: PcapEvidence) -> EvidenceBag:
    bag = EvidenceBag()
    bag.add("pcap", ev)
    return bag
