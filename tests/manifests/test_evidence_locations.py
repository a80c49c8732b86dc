"""Every manifest Evidence points at the value it quotes, checked on the bundled example
(examples/livefeed/deploy/*.yaml): a CPU limit at `cpu: 200m`, an annotation at its own line,
a Service at its `port:`, an image at `image:`, a probe field at that field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tcpdoctor.model import Finding
from tcpdoctor.rules.registry import all_rules, run_rules
from tcpdoctor.sources import manifests

from .helpers import text_at

DEPLOY = Path(__file__).resolve().parents[2] / "examples" / "livefeed" / "deploy"


@pytest.fixture(scope="module")
def example() -> list[Finding]:
    mset = manifests.collect([DEPLOY])
    prb = [r for r in all_rules() if r.id.startswith("PRB")]
    return list(run_rules(manifests.bag_of(mset), prb))


def _evidence(found: list[Finding], rule: str, prefix: str) -> list[tuple[str, int | None]]:
    return sorted(
        (Path(e.location.path).name, e.location.line)
        for f in found
        if f.rule == rule
        for e in f.evidence
        if e.detail.startswith(prefix) and e.location is not None
    )


def test_the_example_lines(example: list[Finding]) -> None:
    # livefeed.yaml line 52 is `cpu: 200m` under resources.limits (35 is the container's `- name:`)
    assert _evidence(example, "PRB006", "resources.limits.cpu") == [("livefeed.yaml", 52)] * 2
    # ingest.yaml line 13 is the annotation `tcpdoctor.io/startup-seconds: "90"` (4 is `apiVersion:`)
    assert _evidence(example, "PRB005", "tcpdoctor.io/startup-seconds") == [("ingest.yaml", 13)]
    # ingest.yaml line 27 is `image:` (26 is `- name: ingest`)
    assert _evidence(example, "PRB009", "image ") == [("ingest.yaml", 27)]
    # the Services' `port:` values (48 and 69 are their `apiVersion:` lines)
    assert _evidence(example, "PRB015", "Service/") == [("ingest.yaml", 58), ("livefeed.yaml", 82)]
    assert _evidence(example, "PRB006", "readinessProbe.timeoutSeconds") == [("livefeed.yaml", 60)]
    assert _evidence(example, "PRB016", "terminationGracePeriodSeconds") == [("livefeed.yaml", 33)]


def test_every_evidence_points_at_what_it_quotes(example: list[Finding]) -> None:
    texts = {p.name: p.read_text() for p in DEPLOY.glob("*.yaml")}
    checked = 0
    for f in example:
        for e in f.evidence:
            assert e.location is not None, (f.rule, e.detail)
            at = text_at(texts[Path(e.location.path).name], e.location)
            # the first token there (a key without its colon, or a scalar without quotes) is quoted by the detail
            token = re.split(r"[\s:,{}\]]", at.lstrip("-[ ").strip("\"'"), maxsplit=1)[0].strip("\"'")
            assert token and token in e.detail, (f.rule, e.detail, e.location, at)
            checked += 1
    assert checked >= 20
