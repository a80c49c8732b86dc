"""Run a lab scenario: build, play, diagnose, judge, and always clean up."""

from __future__ import annotations

import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from tcpdoctor.lab import netns
from tcpdoctor.lab.scenario import LabContext, Scenario, Verdict, judge
from tcpdoctor.model import InputError

PREFIX = "tdlab-"


class ScenarioTimeout(Exception):
    pass


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Bound a scenario's wall time (SIGALRM: the lab runs in the main thread)."""

    def expire(signum: int, frame: FrameType | None) -> None:
        raise ScenarioTimeout(f"scenario exceeded its {seconds:.0f} s limit")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so namespaces are removed either way."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_scenario(
    scenario: Scenario,
    out: Path | None = None,
    keep: bool = False,
    log: Callable[[str], None] = print,
) -> Verdict:
    if not netns.is_root():
        raise InputError("the lab needs root: it builds network namespaces, veth links and iptables rules")
    workdir = Path(tempfile.mkdtemp(prefix=f"tdlab-{scenario.name}-")) if out is None else out / scenario.name
    workdir.mkdir(parents=True, exist_ok=True)
    topo = netns.Topology(PREFIX)
    ctx = LabContext(topo=topo, workdir=workdir, log=log)
    log(f"[{scenario.name}] {scenario.summary}")
    try:
        with _terminate_as_interrupt(), _time_limit(scenario.time_limit):
            scenario.play(ctx)
    except ScenarioTimeout as exc:
        ctx.skipped.append(str(exc))
        log(f"  {exc}")
    finally:
        created = [ns.name for ns in topo.namespaces]
        if keep:
            log(f"  --keep: namespaces left in place: {', '.join(ns.name for ns in topo.namespaces)}")
            for ns in topo.namespaces:
                ns.stop_processes()
        else:
            topo.close()
    verdict = judge(scenario, ctx)
    verdict.namespaces = created
    for note in ctx.skipped:
        if "exceeded" in note:
            verdict.errors.append(note)
        else:
            log(f"  skipped: {note}")
    if out is None and not keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return verdict


def clean(prefix: str = PREFIX) -> list[str]:
    """Remove namespaces left by an interrupted or --keep run."""
    removed = []
    for name in netns.leftovers(prefix):
        netns.Netns(name).delete()
        removed.append(name)
    return removed
