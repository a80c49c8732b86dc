"""The demo's capture (examples/livefeed/capture/livefeed.pcap): small, and diagnosed with the example's code."""

from __future__ import annotations

from pathlib import Path

import pytest

from tcpdoctor.sources.golang import collect as collect_go
from tcpdoctor.sources.manifests import collect as collect_manifests

from ._oracle import diagnose, our_counts, rules_of, tshark_counts

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "livefeed"
CAPTURE = EXAMPLE / "capture" / "livefeed.pcap"


def test_small_and_diagnosed_alone() -> None:
    assert CAPTURE.stat().st_size < 50_000
    _, findings = diagnose(CAPTURE)
    assert rules_of(findings) == {"PCP003", "PCP012"}, [f.message for f in findings]
    (probe,) = [f for f in findings if f.rule == "PCP012"]
    # the head came after the prober had closed: no headers within the timeout, a plain failure
    assert (
        "got no response head before the prober closed the connection 1.00 s after the request"
        in probe.message
    )
    assert "a probe failure (no headers within the timeout)" in probe.message


@pytest.mark.tshark
def test_counts_agree_with_tshark(tshark: str) -> None:
    evidence, _ = diagnose(CAPTURE)
    assert our_counts(evidence) == tshark_counts(tshark, CAPTURE)


def test_joined_with_the_example_go_code_and_manifests() -> None:
    program = collect_go([EXAMPLE])
    manifests = collect_manifests([EXAMPLE / "deploy"])
    _, findings = diagnose(CAPTURE, go=program, manifests=manifests)
    (xl8,) = [f for f in findings if f.rule == "XL008"]
    assert xl8.location is not None and xl8.location.path.endswith("cmd/ingest/main.go")
    assert "matches server IdleTimeout 1m0s" in xl8.message and "IdleConnTimeout 5m0s" in xl8.message
    xl9 = sorted((f.severity.label, f.message) for f in findings if f.rule == "XL009")
    assert len(xl9) == 2  # readiness and liveness both probe /events
    assert any(label == "error" and "liveness" in msg and "failureThreshold 1" in msg for label, msg in xl9)
    assert any(
        "1 failure in a row reached failureThreshold 1: the container is restarted" in msg for _, msg in xl9
    )
