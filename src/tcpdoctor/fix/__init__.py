"""`tcpdoctor fix`: the mechanical manifest fixes, as a unified diff or written in place.

The flow for one file::

    text ──split──► documents (round-trip, per document)
      │                        ▲ fixers edit the node a finding is about
      └─load/extract─► ManifestSet ─► PRB rules ─► findings (policy: select/ignore/annotations)

Fixes run from the findings of the rules themselves (nothing here decides what is
wrong), then the file is checked again: a fix can reveal another one (a preStop sleep
makes the grace period too short), so the loop runs until no fixer changes anything.
Only the documents a fix touched are dumped again; every other byte is kept.

A fix never brings up a finding the file did not have: the converged text is scanned again
(in memory, with every rule the evidence allows, not only the fixable ones) and compared, by
(rule, object), with the original. When something new appears, the fix that caused it is
found by leaving fixes out one at a time, left out for good, and reported in ``skipped``.
With the Go source of the service (``FixContext.go``) the grace period is sized from the
server's Shutdown timeout (XL004) and the cross-layer rules take part in that check.
"""

from __future__ import annotations

import difflib
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from tcpdoctor.evidence.manifests import ManifestSet
from tcpdoctor.fix.fixers import FIXERS, FixContext, edit_for
from tcpdoctor.fix.locate import resolve
from tcpdoctor.fix.yamldoc import YamlFile, split_documents
from tcpdoctor.model import Finding, InputError, Location
from tcpdoctor.policy import Policy
from tcpdoctor.rules.registry import EvidenceBag, Rule, all_rules, get_rule, run_rules

MAX_ROUNDS = 8
# Fixes run in stages, the rules re-checked between them: a probe is repaired in place (stage 0)
# before a startupProbe is copied from it (1), and the grace period is sized (2) once the
# preStop sleep it must cover exists (1).
# PRB004 waits for PRB007 (both raise liveness failureThreshold); XL004/XL005 are PRB016/PRB015 sized
# from the Go server when its source was scanned.
STAGES = {
    **{"PRB007": 0, "PRB009": 0, "PRB010": 0, "PRB011": 0},
    **{"PRB004": 1, "PRB005": 1, "PRB015": 1, "XL005": 1},
    **{"PRB016": 2, "XL004": 2},
}

__all__ = [
    "FIXERS",
    "AppliedFix",
    "FileFix",
    "FixContext",
    "attach_patches",
    "fix_file",
    "fix_text",
    "fixable_rules",
    "write",
]


@dataclass(frozen=True)
class AppliedFix:
    rule: str
    description: str
    location: Location | None  # in the original file; None for a follow-up fix (found only after a fix)
    subject: str


@dataclass
class FileFix:
    path: Path
    original: str
    fixed: str
    applied: list[AppliedFix] = field(default_factory=list)
    error: str | None = None  # could not be parsed: never touched
    note: str | None = None  # left alone on purpose (JSON)
    skipped: list[str] = field(default_factory=list)  # fixes left out: they would bring up a new finding

    @property
    def changed(self) -> bool:
        return self.error is None and self.fixed != self.original

    def diff(self, label: str | None = None) -> str:
        name = label or _display(self.path)
        return "".join(
            difflib.unified_diff(
                self.original.splitlines(keepends=True),
                self.fixed.splitlines(keepends=True),
                fromfile=f"a/{name}",
                tofile=f"b/{name}",
            )
        )


def _display(path: Path) -> str:
    """The path in diff headers: relative to the working directory when below it (git apply takes it)."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix().lstrip("/")


def fixable_rules(policy: Policy | None = None) -> list[Rule]:
    """The rules a fixer exists for, that the policy enables."""
    return [r for r in all_rules() if r.id in FIXERS and (policy is None or policy.rule_enabled(r.id))]


def _manifests_of(text: str, path: str) -> ManifestSet:
    from tcpdoctor.sources import manifests

    try:
        docs = manifests.load_text(text, path)
    except manifests.ParseFailure as exc:
        err = exc.error
        where = ":".join(str(x) for x in (err.path, err.line, err.column) if x is not None)
        raise InputError(f"{where}: {err.message}") from None
    mset = manifests.extract(docs)
    mset.files.append(path)
    return mset


def _bag(mset: ManifestSet, policy: Policy, ctx: FixContext | None) -> EvidenceBag:
    from tcpdoctor.sources import manifests

    bag = manifests.bag_of(mset)
    bag.add("config", policy.config)
    if ctx is not None and ctx.go is not None:
        bag.add("go", ctx.go)
    return bag


def _scoped(policy: Policy, mset: ManifestSet) -> Policy:
    from tcpdoctor.sources import manifests

    return Policy(
        policy.select, policy.ignore, policy.config, [*policy.suppressors, manifests.suppressor(mset)]
    )


def findings_for(
    text: str, path: str, policy: Policy, ctx: FixContext | None = None
) -> tuple[ManifestSet, list[Finding]]:
    """The findings a fixer exists for, after suppressions (annotations, config, --select/--ignore)."""
    mset = _manifests_of(text, path)
    return mset, _scoped(policy, mset).apply(run_rules(_bag(mset, policy, ctx), fixable_rules(policy)))


Key = tuple[str, str]  # (rule, object): what "the same finding" means before and after a fix


def _key(f: Finding) -> Key:
    return f.rule, str(f.subject)


def all_findings(text: str, path: str, policy: Policy, ctx: FixContext | None = None) -> list[Finding]:
    """What `tcpdoctor scan` would report on this file (with the Go source in ``ctx``): every rule the
    evidence allows, whatever --select says (a fix must not bring up a finding the user did not ask
    about), after --ignore, the config and the annotations."""
    mset = _manifests_of(text, path)
    bag = _bag(mset, policy, ctx)
    everything = Policy([], policy.ignore, policy.config, policy.suppressors)
    rules = [r for r in everything.enabled_rules() if "manifests" in r.needs]
    return _scoped(everything, mset).apply(run_rules(bag, rules))


def _one_round(
    yf: YamlFile, mset: ManifestSet, findings: Iterable[Finding], ctx: FixContext
) -> tuple[str, list[AppliedFix]]:
    changed: set[int] = set()
    applied: list[AppliedFix] = []
    for finding in findings:
        target = resolve(finding, mset)
        if target is None:
            continue
        for index, doc in enumerate(yf.documents):
            edit = edit_for(doc.data, target)
            if edit is None:
                continue
            doc.find_style()  # from the text as written, before the edit
            description = FIXERS[finding.rule](finding, target, edit, ctx)
            if description:
                changed.add(index)
                applied.append(AppliedFix(finding.rule, description, finding.location, str(finding.subject)))
            break
    return yf.render(changed), applied


def _converge(text: str, path: str, policy: Policy, ctx: FixContext, skip: set[Key]) -> FileFix:
    """Fix, re-check, fix again until nothing changes; the findings in ``skip`` are left alone."""
    result = FileFix(Path(path), text, text)
    crlf = "\r\n" in text  # edited as LF, written back with the file's own line ends
    current = text.replace("\r\n", "\n") if crlf else text
    first: dict[Key, Location | None] = {}  # (rule, subject) -> position in the user's file
    for round_number in range(MAX_ROUNDS):
        mset, findings = findings_for(current, path, policy, ctx)
        findings = [f for f in findings if _key(f) not in skip]
        if round_number == 0:
            first = {_key(f): f.location for f in reversed(findings)}
        if not findings:
            break
        fixed, applied = current, list[AppliedFix]()
        for stage in sorted({STAGES.get(f.rule, 0) for f in findings}):
            batch = [f for f in findings if STAGES.get(f.rule, 0) == stage]
            fixed, applied = _one_round(split_documents(path, current), mset, batch, ctx)
            if fixed != current:
                break
        if fixed == current:
            break
        _check_still_parses(fixed, path)
        if result.applied:  # positions of a later round are in the edited text, not in the user's file
            applied = [replace(a, location=first.get((a.rule, a.subject))) for a in applied]
        result.applied.extend(applied)
        current = fixed
    if crlf:
        current = current.replace("\n", "\r\n") if result.applied else text
    result.fixed = current
    return result


def _introduced(result: FileFix, before: set[Key], policy: Policy, ctx: FixContext) -> list[Finding]:
    if not result.applied:
        return []
    after = all_findings(result.fixed, str(result.path), policy, ctx)
    return [f for f in after if _key(f) not in before]


def _why(fix: AppliedFix, new: list[Finding]) -> str:
    caused = "; ".join(
        f"{f.rule} ({rule.summary if (rule := get_rule(f.rule)) else f.title}) on {f.subject}" for f in new
    )
    return f"{fix.rule} not fixed ({fix.subject}): the fix would bring up {caused}"


def fix_text(text: str, path: str, policy: Policy | None = None, ctx: FixContext | None = None) -> FileFix:
    """The fixed text of one manifest file (raises InputError if it is not YAML).

    Never worse than the original: a fix that would bring up a finding the file did not have (by
    rule and object) is left out, and said so in ``skipped``.
    """
    policy = policy or Policy()
    ctx = ctx or FixContext()
    skip: set[Key] = set()
    skipped: list[str] = []
    result = _converge(text, path, policy, ctx, skip)
    if not result.applied:
        return result
    before = {_key(f) for f in all_findings(text, path, policy, ctx)}
    new = _introduced(result, before, policy, ctx)
    while new:
        culprit = None
        for candidate in reversed(result.applied):  # the later fixes first: they were made on top
            key = (candidate.rule, candidate.subject)
            if key in skip:
                continue
            trial = _converge(text, path, policy, ctx, skip | {key})
            left = _introduced(trial, before, policy, ctx)
            if len(left) < len(new):
                culprit = (candidate, key, trial, left)
                break
        if culprit is None:  # no single fix to blame: nothing is changed in this file
            caused = ", ".join(f"{f.rule} on {f.subject}" for f in new)
            skipped.append(f"no fix applied to this file: together the fixes would bring up {caused}")
            result = FileFix(Path(path), text, text)
            break
        candidate, key, result, left = culprit
        skip.add(key)
        skipped.append(_why(candidate, [f for f in new if _key(f) not in {_key(g) for g in left}]))
        new = left
    result.skipped = skipped
    return result


def _check_still_parses(text: str, path: str) -> None:
    try:
        _manifests_of(text, path)
    except InputError as exc:  # a fixer bug must never reach the user's file
        raise RuntimeError(f"internal error: the fixed {path} does not parse: {exc}") from None


def fix_file(path: Path, policy: Policy | None = None, ctx: FixContext | None = None) -> FileFix:
    """One file's fixes; a file that cannot be read or parsed comes back with ``error`` set, untouched."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return FileFix(path, "", "", error=f"{path}: {getattr(exc, 'strerror', None) or exc}")
    if path.suffix.lower() == ".json" or text.lstrip()[:1] in ("{", "["):
        return FileFix(
            path, text, text, note=f"{path}: JSON manifests are not rewritten; fix the YAML source"
        )
    try:
        return fix_text(text, str(path), policy, ctx)
    except InputError as exc:
        return FileFix(path, text, text, error=str(exc))


def write(fix: FileFix) -> None:
    """Replace the file atomically (temp file in the same folder + os.replace), keeping its mode."""
    if not fix.changed:
        return
    target = fix.path
    mode = target.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tcpdoctor-fix", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(fix.fixed)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def attach_patches(findings: list[Finding], ctx: FixContext | None = None) -> list[Finding]:
    """Findings whose rule has a fixer get ``fix.patch``: the diff of that one fix on its file.

    One fix at a time (no follow-up fixes), so each patch reads on its own next to its finding;
    `tcpdoctor fix` gives the combined, re-checked result. Files are read once per finding that
    has a fixer: meant for reports of a few files (the demo), not for a scan of thousands.
    """
    from tcpdoctor.model import Fix

    out: list[Finding] = []
    for finding in findings:
        if finding.rule not in FIXERS or finding.location is None or finding.fix is None:
            out.append(finding)
            continue
        patch = _single_patch(finding, Path(finding.location.path), ctx or FixContext())
        out.append(replace(finding, fix=Fix(finding.fix.description, patch)) if patch else finding)
    return out


def _single_patch(finding: Finding, path: Path, ctx: FixContext) -> str | None:
    if path.suffix.lower() == ".json":
        return None
    try:
        text = path.read_text(encoding="utf-8")
        mset = _manifests_of(text, str(path))
        yf = split_documents(str(path), text)
    except (OSError, UnicodeDecodeError, InputError):
        return None
    fixed, applied = _one_round(yf, mset, [finding], ctx)
    if not applied or fixed == text:
        return None
    return FileFix(path, text, fixed, applied).diff()
