"""The kubelet's probe worker (pkg/kubelet/prober/worker.go, prober.go), replayed on real attempts.

- The worker probes once at start, then on a ticker of periodSeconds. A Go ticker drops
  ticks it cannot deliver, so an attempt slower than the period is followed at once by
  the next one (the real period stretches to the attempt's length: PRB011).
- Attempts before initialDelaySeconds are skipped.
- runProbeWithRetries makes up to 3 attempts when the prober returns an *error* (for HTTP:
  an error while reading the body; for a missing port), and when all three error the worker
  throws the result away: the state does not move. Failures are not retried.
- resultRun counts equal results in a row; the state changes when it reaches
  failureThreshold (failures) or successThreshold (successes). Initial states: readiness
  Failure (NotReady), liveness Success, startup Unknown.
- A liveness failure at the threshold restarts the container; a startup probe that reaches
  either threshold stops (started, or restarted). The worker then holds until a new
  container; the emulation cannot restart the target, so it resets the run and goes on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from tcpdoctor.evidence.probe import Attempt, ProbeRun, ProbeSpec, Transition

MAX_PROBE_RETRIES = 3  # prober.go maxProbeRetries
INITIAL_STATE = {"readiness": "failure", "liveness": "success", "startup": "unknown"}

AttemptFn = Callable[[], Attempt]


@dataclass
class WorkerState:
    spec: ProbeSpec
    state: str = ""
    last: str | None = None
    run: int = 0

    def __post_init__(self) -> None:
        self.state = INITIAL_STATE[self.spec.type]

    def observe(self, result: str, at: float, index: int) -> Transition | None:
        """Feed one period's result ("success" | "failure"); return the transition it causes."""
        if result == self.last:
            self.run += 1
        else:
            self.last, self.run = result, 1
        threshold = self.spec.failure_threshold if result == "failure" else self.spec.success_threshold
        if self.run < threshold:
            return None
        previous, self.state = self.state, result
        kind = self.spec.type
        if kind == "startup":
            self.run = 0
            if result == "success":
                return Transition(
                    at, index, "started", "startup probe succeeded: liveness and readiness probes start"
                )
            return Transition(
                at,
                index,
                "startup-failed",
                f"startup probe failed {self.spec.failure_threshold} times in a row: the container is killed and restarted",
            )
        if kind == "liveness":
            if result == "failure":
                self.run = 0
                return Transition(
                    at,
                    index,
                    "restart",
                    f"liveness probe failed {self.spec.failure_threshold} times in a row: the container is restarted",
                )
            return None
        if previous == result:
            return None
        if result == "success":
            n = self.spec.success_threshold
            return Transition(
                at, index, "Ready", f"{n} success{'es' if n > 1 else ''} in a row: the pod becomes Ready"
            )
        n = self.spec.failure_threshold
        return Transition(
            at,
            index,
            "NotReady",
            f"{n} failures in a row: the pod is NotReady and leaves the Service endpoints",
        )


def first_probe_time(spec: ProbeSpec) -> float:
    """The first ticker slot at or after initialDelaySeconds (the worker probes at t=0, P, 2P...)."""
    period = max(spec.period_seconds, 1)
    return math.ceil(spec.initial_delay_seconds / period) * period


def run_probes(
    spec: ProbeSpec,
    attempt: AttemptFn,
    *,
    count: int | None = None,
    duration: float | None = None,
    on_attempt: Callable[[Attempt, Transition | None], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    user_agent: str = "",
) -> ProbeRun:
    """Run attempts on the kubelet's schedule until ``count`` periods or ``duration`` seconds pass."""
    run = ProbeRun(spec=spec, user_agent=user_agent)
    worker = WorkerState(spec)
    period = float(max(spec.period_seconds, 1))
    start = clock()
    next_tick = first_probe_time(spec)
    last_tick = next_tick
    index = 0
    while True:
        if count is not None and index >= count:
            break
        if duration is not None and next_tick > duration:
            break
        wait = start + next_tick - clock()
        if wait > 0:
            sleep(wait)
        began = clock() - start
        result = attempt()
        tries = 1
        while result.outcome == "error" and tries < MAX_PROBE_RETRIES:
            result = attempt()
            tries += 1
        index += 1
        result.index, result.started, result.tries = index, began, tries
        transition = None
        if result.outcome != "error":
            transition = worker.observe("success" if result.passed else "failure", clock() - start, index)
        run.attempts.append(result)
        if transition is not None:
            run.transitions.append(transition)
        if on_attempt is not None:
            on_attempt(result, transition)
        next_tick, last_tick = next_slot(clock() - start, last_tick, period)
    run.final_state = worker.state
    return run


def next_slot(ended: float, last_tick: float, period: float) -> tuple[float, float]:
    """When the worker probes next, as a Go ticker (buffer of one tick) delivers it.

    Returns (time of the next attempt, the tick it consumes). A tick that fell while the
    last attempt ran is waiting in the channel: the next attempt starts at once; the
    ticks in between are dropped.
    """
    pending = math.floor(ended / period) * period
    if pending > last_tick:
        return ended, pending
    upcoming = pending + period
    return upcoming, upcoming


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]
