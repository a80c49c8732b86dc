"""The rule registry: every rule is a small function registered under its ID.

A rule reads an :class:`EvidenceBag` and yields findings. It declares which kinds
of evidence it needs (``needs``); a rule whose evidence is missing simply does not
run, which is how cross-layer (XL) rules stay quiet on a manifests-only scan.

    @rule("PRB001", name="missing-liveness-probe", severity=Severity.INFO,
          summary="long-running container with no livenessProbe", needs=("manifests",))
    def missing_liveness_probe(bag: EvidenceBag) -> Iterator[Finding]:
        ...
        yield missing_liveness_probe.finding(message=..., location=..., subject=...)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tcpdoctor.model import Evidence, Finding, Fix, Location, Severity, Subject

RULE_ID = re.compile(r"^(TDR|PRB|SRV|CLI|SSE|KRN|PCP|TRC|XL|PRO)\d{3}$")

Check = Callable[["EvidenceBag"], Iterable[Finding]]

# the catalog's order (RULES.md): manifests, Go, node, capture, trace, cross-layer, then ours
FAMILY_ORDER = {
    f: i for i, f in enumerate(("PRB", "SRV", "CLI", "SSE", "KRN", "PCP", "TRC", "XL", "PRO", "TDR"))
}


class EvidenceBag:
    """The evidence of one run, by kind ("manifests", "go", "node", "pcap", "trace", "probe").

    Each kind holds whatever object its source produces; rules know the type they ask for.
    """

    def __init__(self) -> None:
        self._kinds: dict[str, Any] = {}

    def add(self, kind: str, evidence: Any) -> None:
        self._kinds[kind] = evidence

    def has(self, kind: str) -> bool:
        return kind in self._kinds

    def get(self, kind: str) -> Any:
        return self._kinds[kind]

    def maybe(self, kind: str) -> Any | None:
        return self._kinds.get(kind)

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(self._kinds)


@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    severity: Severity
    summary: str
    needs: tuple[str, ...]
    check: Check
    # manifest-only guesses this rule confirms with more evidence: when this rule fires on an
    # object, their findings on the same object are dropped (the user sees the certain one)
    supersedes: tuple[str, ...] = ()

    @property
    def family(self) -> str:
        return re.sub(r"\d+$", "", self.id)

    def __call__(self, bag: EvidenceBag) -> Iterable[Finding]:
        return self.check(bag)

    def finding(
        self,
        message: str,
        *,
        location: Location | None = None,
        subject: Subject | None = None,
        evidence: Iterable[Evidence] = (),
        fix: Fix | None = None,
        severity: Severity | None = None,
        title: str | None = None,
    ) -> Finding:
        """A finding of this rule, with its default severity and title unless told otherwise."""
        return Finding(
            rule=self.id,
            severity=severity if severity is not None else self.severity,
            title=title or self.summary,
            message=message,
            location=location,
            subject=subject or Subject(),
            evidence=list(evidence),
            fix=fix,
        )

    def doc_path(self) -> Path | None:
        return find_doc(self.id)


_RULES: dict[str, Rule] = {}


def rule(
    rule_id: str,
    *,
    name: str,
    severity: Severity,
    summary: str,
    needs: Iterable[str],
    supersedes: Iterable[str] = (),
) -> Callable[[Check], Rule]:
    """Register a check under ``rule_id``; the decorated name becomes the :class:`Rule`."""
    if not RULE_ID.match(rule_id):
        raise ValueError(f"bad rule id {rule_id!r}")

    def register(check: Check) -> Rule:
        if rule_id in _RULES:
            raise ValueError(f"rule {rule_id} registered twice")
        registered = Rule(rule_id, name, severity, summary, tuple(needs), check, tuple(supersedes))
        _RULES[rule_id] = registered
        return registered

    return register


def all_rules() -> list[Rule]:
    """Every rule, in ID order (importing the families first)."""
    from tcpdoctor import rules as _families

    _families.load_all()
    return sorted(_RULES.values(), key=lambda r: (FAMILY_ORDER.get(r.family, len(FAMILY_ORDER)), r.id))


def get_rule(rule_id: str) -> Rule | None:
    all_rules()
    return _RULES.get(rule_id.upper())


def find_doc(rule_id: str) -> Path | None:
    """The rule's page: shipped inside the wheel, or docs/rules/ of a source checkout."""
    here = Path(__file__).resolve().parent.parent
    for base in (here / "_docs" / "rules", here.parent.parent / "docs" / "rules"):
        page = base / f"{rule_id}.md"
        if page.is_file():
            return page
    return None


def matches(rule_id: str, patterns: Iterable[str]) -> bool:
    """Prefix matching as ruff does it: "PRB" selects every PRB rule, "PRB01" PRB010-PRB019."""
    return any(rule_id.startswith(p.strip().upper()) for p in patterns if p.strip())


def run_rules(bag: EvidenceBag, rules: Iterable[Rule] | None = None) -> Iterator[Finding]:
    """Run every rule whose evidence is present."""
    for r in rules if rules is not None else all_rules():
        if all(bag.has(kind) for kind in r.needs):
            yield from r(bag)
