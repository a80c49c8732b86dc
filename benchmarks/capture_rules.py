"""Benchmark: the cost of the rules over a big capture's evidence (issue #6), analysis excluded.

Runs the analysis once, as `tcpdoctor pcap F --format json` does (the same factories: the
app layer unless --tcp-only; lite streaming), then times ``run_rules`` over the evidence
with every rule enabled (only those whose evidence is present run: the PCP rules), a fresh
evidence object each run so that nothing computed by a previous run is reused. Prints the
median of --runs and, with --per-rule, each rule's median; --dump writes the findings as
JSON (to diff the findings before and after a change: they must be identical).

    .venv/bin/python benchmarks/capture_rules.py /tmp/bench/h1.pcap [--tcp-only] [--runs 5]
        [--per-rule] [--dump findings.json] [--against REV]

--command instead runs the real command (`tcpdoctor pcap F --format json -o /dev/null`, one
process per run) and times the run_rules call inside it: the garbage collector's state there (the
heap the analysis left) is part of the cost; with --against the old rules run in every other process.

--against REV also loads the capture rules (rules/capture.py and rules/_capture.py) as they were
at git revision REV, runs them on the same evidence, times them the same way and checks that
their findings are identical to today's (exit status 1 when they differ): the "before" figure
and the equivalence check of an optimisation, unaffected by changes to the analysis itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))

from tcpdoctor.commands.pcap import _factories  # noqa: E402
from tcpdoctor.evidence.pcap import PcapEvidence  # noqa: E402
from tcpdoctor.model import Finding, Severity  # noqa: E402
from tcpdoctor.rules.registry import Check, EvidenceBag, Rule, all_rules, run_rules  # noqa: E402
from tcpdoctor.sources.pcap.tracker import CaptureAnalysis, Engine  # noqa: E402


def analyse(path: str, tcp_only: bool) -> PcapEvidence:
    analysis = CaptureAnalysis(path, engine=Engine([] if tcp_only else _factories()), lite=True)
    for _ in analysis.stream():  # as the command's JSON output consumes it
        pass
    return analysis.evidence


def _git_show(rev: str, path: str) -> str:
    done = subprocess.run(
        ["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return done.stdout


def _load(name: str, source: str, namespace: dict[str, object]) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(namespace)
    sys.modules[name] = module  # dataclasses look their module up
    exec(compile(source, f"<{name}>", "exec"), module.__dict__)
    return module


def rules_at(rev: str) -> list[Rule]:
    """The capture rules of git revision ``rev``, loaded beside today's (not registered)."""
    helpers = _load("_old_capture_helpers", _git_show(rev, "src/tcpdoctor/rules/_capture.py"), {})
    found: list[Rule] = []

    def rule(
        rule_id: str, *, name: str, severity: Severity, summary: str, needs: Iterable[str], **more: object
    ) -> Callable[[Check], Rule]:
        def register(check: Check) -> Rule:
            r = Rule(rule_id, name, severity, summary, tuple(needs), check)
            found.append(r)
            return r

        return register

    source = _git_show(rev, "src/tcpdoctor/rules/capture.py")
    for line, instead in (
        ("from tcpdoctor.rules import _capture as cap\n", ""),  # the old helpers are given as `cap`
        (
            "from tcpdoctor.rules.registry import EvidenceBag, rule\n",
            "from tcpdoctor.rules.registry import EvidenceBag\n",
        ),
    ):
        if line not in source:
            raise SystemExit(f"{rev}: capture.py has no line {line.strip()!r}: cannot load it beside today's")
        source = source.replace(line, instead)
    _load("_old_capture_rules", source, {"cap": helpers, "rule": rule})
    return found


def fresh(ev: PcapEvidence) -> PcapEvidence:
    """A new evidence object with the same content (a new identity: no cached index applies)."""
    return dataclasses.replace(ev, connections=list(ev.connections))


def timed(ev: PcapEvidence, rules: list[Rule]) -> tuple[float, list[Finding]]:
    bag = EvidenceBag()
    bag.add("pcap", fresh(ev))
    gc.collect()
    start = time.perf_counter()
    found = list(run_rules(bag, rules))
    return time.perf_counter() - start, found


def in_command(capture: str, tcp_only: bool, against: str | None) -> None:
    """One `tcpdoctor pcap` run in this process, its run_rules call timed (prints a JSON line)."""
    import tcpdoctor.commands.pcap as command
    from tcpdoctor.cli import main as cli

    old = rules_at(against) if against else None
    collections: list[int] = []
    gc.callbacks.append(
        lambda phase, info: collections.append(info["generation"]) if phase == "stop" else None
    )

    def timed_run_rules(bag: EvidenceBag, rules: Iterable[Rule] | None = None) -> Iterator[Finding]:
        collections.clear()
        start = time.perf_counter()
        found = list(run_rules(bag, old if old is not None else rules))
        took = time.perf_counter() - start
        full = collections.count(2)
        print(json.dumps({"seconds": took, "findings": len(found), "full_collections": full}))
        return iter(found)

    command.run_rules = timed_run_rules
    sys.argv = ["tcpdoctor", "pcap", capture, "--format", "json", "--fail-on", "never", "-o", os.devnull]
    sys.argv += ["--tcp-only"] if tcp_only else []
    try:
        cli()
    except SystemExit:
        pass


def command_runs(args: argparse.Namespace) -> None:
    """--command: each run in its own process, interleaved with the old rules' runs (--against)."""
    results: dict[str, list[dict[str, float]]] = {"now": [], "before": []}
    for _ in range(args.runs):
        for label, against in (("now", None), ("before", args.against)):
            if label == "before" and not against:
                continue
            child = [sys.executable, __file__, args.capture, "--in-command"]
            child += ["--tcp-only"] if args.tcp_only else []
            child += ["--against", against] if against else []
            out = subprocess.run(child, capture_output=True, text=True, check=True).stdout
            results[label].append(json.loads(out.strip().splitlines()[-1]))
    for label, runs in results.items():
        if runs:
            ms = [r["seconds"] * 1000 for r in runs]
            name = "today's rules" if label == "now" else f"the capture rules of {args.against}"
            print(
                f"run_rules inside `tcpdoctor pcap --format json{' --tcp-only' if args.tcp_only else ''}` with "
                f"{name}: median {statistics.median(ms):.1f} ms over {len(ms)} runs (min {min(ms):.1f} ms), "
                f"{runs[0]['findings']} findings, full collections {[int(r['full_collections']) for r in runs]}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("capture")
    parser.add_argument(
        "--tcp-only", action="store_true", help="no app layer (as `tcpdoctor pcap --tcp-only`)"
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--per-rule", action="store_true", help="also time each rule alone")
    parser.add_argument("--dump", type=Path, help="write the findings as JSON to this file")
    parser.add_argument(
        "--against", metavar="REV", help="compare with the capture rules of this git revision"
    )
    parser.add_argument(
        "--command", action="store_true", help="time run_rules inside the real command (a process per run)"
    )
    parser.add_argument("--in-command", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.in_command:
        in_command(args.capture, args.tcp_only, args.against)
        return
    if args.command:
        command_runs(args)
        return

    started = time.perf_counter()
    ev = analyse(args.capture, args.tcp_only)
    analysed = time.perf_counter() - started
    rules = [r for r in all_rules() if all(kind == "pcap" for kind in r.needs)]
    print(
        f"{args.capture}: {ev.stats.packets} packets, {ev.stats.connections} connections, "
        f"{len(ev.connections)} kept ({ev.notable_kept} notable, {ev.clean_kept} clean); "
        f"analysis {analysed:.2f} s ({'tcp only' if args.tcp_only else 'app layer'})"
    )
    old = rules_at(args.against) if args.against else None
    times: list[float] = []
    before: list[float] = []
    findings: list[Finding] = []
    old_findings: list[Finding] = []
    for _ in range(args.runs):  # the old rules' runs interleaved with today's: same machine load
        took, findings = timed(ev, rules)
        times.append(took)
        if old is not None:
            took, old_findings = timed(ev, old)
            before.append(took)
    print(
        f"run_rules: median {statistics.median(times) * 1000:.1f} ms over {args.runs} runs "
        f"(min {min(times) * 1000:.1f} ms), {len(findings)} findings"
    )
    if old is not None:
        print(
            f"run_rules with the capture rules of {args.against}: median {statistics.median(before) * 1000:.1f} ms "
            f"(min {min(before) * 1000:.1f} ms), {len(old_findings)} findings"
        )
    if args.per_rule:
        for r in rules:
            each = [timed(ev, [r])[0] for _ in range(args.runs)]
            print(f"  {r.id} {r.name:<28} {statistics.median(each) * 1000:8.1f} ms")
    if old is not None:
        ours = [f.to_dict() for f in findings if f.rule.startswith("PCP")]
        theirs = [f.to_dict() for f in old_findings]
        if ours != theirs:
            differ = next((i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b), None)
            print(f"DIFFERENT findings: {len(ours)} now, {len(theirs)} before; first difference at {differ}")
            if args.dump:
                args.dump.write_text(json.dumps([f.to_dict() for f in findings], indent=1) + "\n")
            raise SystemExit(1)
        print(f"identical findings ({len(ours)} PCP findings, same order)")
    if args.dump:
        args.dump.write_text(json.dumps([f.to_dict() for f in findings], indent=1) + "\n")
        print(f"findings written to {args.dump}")


if __name__ == "__main__":
    main()
