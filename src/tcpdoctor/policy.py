"""Which findings a run keeps: --select/--ignore, the config file, and in-source suppressions.

In-source suppressions (a Kubernetes annotation, a Go ``//tcpdoctor:ignore`` comment)
are known only to the source that read the file, so sources register a
:data:`Suppressor` that answers "is this finding silenced where it points?".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from tcpdoctor.config import Config
from tcpdoctor.model import Finding, Severity
from tcpdoctor.rules.registry import Rule, all_rules, matches

Suppressor = Callable[[Finding], bool]


@dataclass
class Policy:
    select: list[str] = field(default_factory=list)
    ignore: list[str] = field(default_factory=list)
    config: Config = field(default_factory=Config)
    suppressors: list[Suppressor] = field(default_factory=list)

    def rule_enabled(self, rule_id: str) -> bool:
        select = self.select or self.config.select
        if select and not matches(rule_id, select):
            return False
        return not matches(rule_id, [*self.ignore, *self.config.ignore])

    def enabled_rules(self) -> list[Rule]:
        return [r for r in all_rules() if self.rule_enabled(r.id)]

    def apply(self, findings: Iterable[Finding]) -> list[Finding]:
        """Drop suppressed and superseded findings, apply severity overrides, return them sorted."""
        kept: list[Finding] = []
        for f in findings:
            if not self.rule_enabled(f.rule):
                continue
            if f.location and matches(f.rule, self.config.ignored_for_path(f.location.path)):
                continue
            if any(s(f) for s in self.suppressors):
                continue
            override = self.config.severity.get(f.rule)
            kept.append(replace(f, severity=override) if override else f)
        kept = drop_superseded(kept)
        kept.sort(key=Finding.sort_key)
        return kept


def _object_key(f: Finding) -> tuple[str | None, str | None, str | None]:
    return (f.subject.kind, f.subject.namespace or "default", f.subject.name)


def drop_superseded(findings: list[Finding]) -> list[Finding]:
    """A cross-layer finding that confirms a manifest-only guess replaces it on the same object.

    PRB012 ("the path looks like a stream") and XL001 ("the Go handler behind it streams")
    describe one problem: once XL001 has fired on Deployment/api, PRB012 on it is noise.
    """
    rules = {r.id: r for r in all_rules()}
    shadowed: set[tuple[str, tuple[str | None, str | None, str | None]]] = set()
    for f in findings:
        rule = rules.get(f.rule)
        if rule is not None and f.subject.name:
            shadowed.update((old, _object_key(f)) for old in rule.supersedes)
    return [f for f in findings if (f.rule, _object_key(f)) not in shadowed]


def unknown_ids(patterns: Iterable[str]) -> list[str]:
    """Patterns of --select/--ignore/config that match no rule (a typo would silence everything).

    With no pattern there is nothing to check, and the rule modules are not imported for it.
    """
    patterns = [p for p in patterns if p]
    if not patterns:
        return []
    ids = [r.id for r in all_rules()]
    return [p for p in patterns if not any(i.startswith(p.upper()) for i in ids)]


def parse_ids(text: str | None) -> list[str]:
    """ "PRB003, SRV" -> ["PRB003", "SRV"]."""
    if not text:
        return []
    return [part.strip().upper() for part in text.split(",") if part.strip()]


def exit_code(findings: Iterable[Finding], fail_on: str) -> int:
    if fail_on == "never":
        return 0
    threshold = Severity.parse(fail_on)
    return 1 if any(f.severity >= threshold for f in findings) else 0
