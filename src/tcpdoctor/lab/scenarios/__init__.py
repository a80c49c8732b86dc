"""The lab's scenarios, one module each; `all_scenarios()` lists them in a teaching order."""

from __future__ import annotations

import importlib
import pkgutil

from tcpdoctor.lab.scenario import Scenario

ORDER = (
    "healthy",
    "refused_during_rollout",
    "syn_drop",
    "idle_reuse_reset",
    "keepalive_race",
    "mtu_blackhole",
    "slow_reader",
    "sse_readiness_probe",
    "accept_overflow",
)


def all_scenarios() -> list[Scenario]:
    names = [info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_")]
    names.sort(key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))
    return [importlib.import_module(f"{__name__}.{n}").SCENARIO for n in names if n != "data"]


def get(name: str) -> Scenario | None:
    return next((s for s in all_scenarios() if s.name == name), None)
