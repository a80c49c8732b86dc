"""The kubelet worker's state machine and schedule, on scripted attempt results (no network)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tcpdoctor.evidence.probe import Attempt, ProbeSpec
from tcpdoctor.sources.probe.kubelet import first_probe_time, next_slot, percentile, run_probes


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def scripted(clock: FakeClock, outcomes: list[str], elapsed: float = 0.01) -> Iterator[Attempt]:
    for outcome in outcomes:
        clock.now += elapsed
        yield Attempt(0, 0.0, outcome, outcome, elapsed)  # type: ignore[arg-type]


def run(
    spec: ProbeSpec, outcomes: list[str], elapsed: float = 0.01, periods: int | None = None
) -> tuple[list[tuple[str, int]], list[Attempt]]:
    clock = FakeClock()
    script = scripted(clock, outcomes, elapsed)
    count = periods if periods is not None else len(outcomes)
    result = run_probes(spec, lambda: next(script), count=count, sleep=clock.sleep, clock=clock)
    return [(t.verdict, t.attempt) for t in result.transitions], result.attempts


def test_readiness_ready_then_not_ready_after_failure_threshold() -> None:
    spec = ProbeSpec(type="readiness", failure_threshold=3)
    verdicts, _ = run(spec, ["success", "failure", "failure", "failure", "success"])
    assert verdicts == [("Ready", 1), ("NotReady", 4), ("Ready", 5)]


def test_readiness_success_threshold_counts_in_a_row() -> None:
    spec = ProbeSpec(type="readiness", success_threshold=2)
    verdicts, _ = run(spec, ["success", "failure", "success", "success"])
    assert verdicts == [("Ready", 4)]


def test_liveness_restart_only_at_threshold_and_again_after_reset() -> None:
    spec = ProbeSpec(type="liveness", failure_threshold=2)
    verdicts, _ = run(spec, ["failure", "success", "failure", "failure", "failure", "failure"])
    assert verdicts == [("restart", 4), ("restart", 6)]


def test_startup_gives_up_or_starts() -> None:
    assert run(ProbeSpec(type="startup", failure_threshold=2), ["failure", "failure"])[0] == [
        ("startup-failed", 2)
    ]
    assert run(ProbeSpec(type="startup", failure_threshold=5), ["failure", "success"])[0] == [("started", 2)]


def test_prober_errors_are_retried_three_times_and_discarded() -> None:
    spec = ProbeSpec(type="liveness", failure_threshold=1)
    verdicts, attempts = run(spec, ["error", "error", "error", "failure"], periods=2)
    # first period: three errors in a row, thrown away; second period: the failure counts
    assert attempts[0].outcome == "error" and attempts[0].tries == 3
    assert verdicts == [("restart", 2)]


def test_warning_counts_as_success() -> None:
    verdicts, _ = run(ProbeSpec(type="readiness"), ["warning"])
    assert verdicts == [("Ready", 1)]


def test_schedule_uses_period_and_initial_delay() -> None:
    spec = ProbeSpec(period_seconds=10, initial_delay_seconds=15)
    _, attempts = run(spec, ["success", "success", "success"])
    assert [a.started for a in attempts] == pytest.approx([20.0, 30.0, 40.0], abs=0.05)
    assert first_probe_time(ProbeSpec(period_seconds=10, initial_delay_seconds=0)) == 0


def test_slow_attempts_stretch_the_period_like_a_go_ticker() -> None:
    # an attempt of 2.5 periods: the buffered tick fires at once, then the ticker's own phase resumes
    assert next_slot(25.0, 0.0, 10.0) == (25.0, 20.0)
    assert next_slot(25.1, 20.0, 10.0) == (30.0, 30.0)
    spec = ProbeSpec(period_seconds=10, timeout_seconds=25)
    _, attempts = run(spec, ["failure", "failure"], elapsed=25.0)
    assert [a.started for a in attempts] == pytest.approx([0.0, 25.0])


def test_percentile_nearest_rank() -> None:
    assert percentile([0.1, 0.2, 0.3, 0.4], 50) == 0.2
    assert percentile([0.1, 0.2, 0.3, 0.4], 99) == 0.4
