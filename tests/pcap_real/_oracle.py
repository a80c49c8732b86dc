"""Shared by the real-traffic tests: run tcpdoctor's analysis and rules, and ask tshark the same questions."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from tcpdoctor.evidence.pcap import PcapEvidence
from tcpdoctor.model import Finding
from tcpdoctor.rules.registry import EvidenceBag, all_rules
from tcpdoctor.sources.pcap.app import AppAnalyzerFactory
from tcpdoctor.sources.pcap.tracker import CaptureAnalysis


def analyse(path: Path) -> PcapEvidence:
    return CaptureAnalysis(str(path), factories=[AppAnalyzerFactory()]).run()


def diagnose(path: Path, **extra: object) -> tuple[PcapEvidence, list[Finding]]:
    """The capture's evidence and the findings of every rule that can run (PCP, and XL with ``extra``)."""
    evidence = analyse(path)
    bag = EvidenceBag()
    bag.add("pcap", evidence)
    for kind, value in extra.items():
        bag.add(kind, value)
    findings = [f for r in all_rules() if all(bag.has(k) for k in r.needs) for f in r(bag)]
    return evidence, findings


def rules_of(findings: list[Finding]) -> set[str]:
    return {f.rule for f in findings}


@dataclass
class Counts:
    connections: int
    rsts: int
    retransmissions: int
    zero_windows: int


def tshark_counts(tshark: str, path: Path) -> Counts:
    """tshark's view: tcp.stream indexes, RST segments, tcp.analysis.retransmission, tcp.analysis.zero_window."""
    out = subprocess.run(
        [
            tshark,
            "-r",
            str(path),
            "-Y",
            "tcp",
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "tcp.stream",
            "-e",
            "tcp.flags.reset",
            "-e",
            "tcp.analysis.retransmission",
            "-e",
            "tcp.analysis.zero_window",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    streams: set[str] = set()
    rsts = retx = zw = 0
    for line in out.splitlines():
        stream, rst, retrans, zero = [*line.split("|"), "", "", ""][:4]
        streams.add(stream)
        rsts += rst in ("1", "True")
        retx += bool(retrans)
        zw += bool(zero)
    return Counts(len(streams), rsts, retx, zw)


def our_counts(evidence: PcapEvidence) -> Counts:
    return Counts(
        evidence.stats.connections,
        evidence.events["rst"],
        evidence.events["retransmission"],
        evidence.events["zero_window"],
    )
