"""Every lab scenario end to end: real namespaces, Go servers, captures, and tcpdoctor's own diagnosis."""

from __future__ import annotations

import pytest

from tcpdoctor.lab import netns, runner
from tcpdoctor.lab.scenarios import all_scenarios

SCENARIOS = {s.name: s for s in all_scenarios()}


@pytest.mark.root
@pytest.mark.go
@pytest.mark.slow
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_diagnosis_matches(name: str, root: None, go: str, tcpdump: str) -> None:
    lines: list[str] = []
    verdict = runner.run_scenario(SCENARIOS[name], log=lines.append)
    story = "\n".join(lines)
    assert not verdict.errors, story + "\n" + "\n".join(verdict.errors)
    assert not verdict.missing, f"missing {sorted(verdict.missing)} (found {sorted(verdict.found)})\n{story}"
    assert not verdict.too_severe, f"unexpected findings {verdict.too_severe}\n{story}"
    assert verdict.namespaces, "the scenario built no hosts"
    assert not set(verdict.namespaces) & set(netns.leftovers("tdlab-")), "namespaces left behind"


def test_every_scenario_expects_something() -> None:
    for s in SCENARIOS.values():
        assert s.expect or s.clean_at, s.name
    required = {
        "refused-during-rollout",
        "syn-drop",
        "idle-reuse-reset",
        "keepalive-race",
        "mtu-blackhole",
        "slow-reader",
        "sse-readiness-probe",
        "accept-overflow",
        "healthy",
    }
    assert required <= set(SCENARIOS)


def test_lab_refuses_without_root(monkeypatch: pytest.MonkeyPatch) -> None:
    from tcpdoctor.model import InputError

    monkeypatch.setattr(netns, "is_root", lambda: False)
    with pytest.raises(InputError, match="needs root"):
        runner.run_scenario(SCENARIOS["healthy"])
