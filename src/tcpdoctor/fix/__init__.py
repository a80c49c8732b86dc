"""`tcpdoctor fix`: the mechanical manifest fixes, as a unified diff or written in place.

The flow for one file::

    text ──split──► documents (round-trip, per document)
      │                        ▲ fixers edit the node a finding is about
      └─load/extract─► ManifestSet ─► PRB rules ─► findings (policy: select/ignore/annotations)

Fixes run from the findings of the rules themselves (nothing here decides what is
wrong), then the file is checked again: a fix can reveal another one (a preStop sleep
makes the grace period too short), so the loop runs until no fixer changes anything.
Only the documents a fix touched are dumped again; every other byte is kept.
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
from tcpdoctor.rules.registry import Rule, all_rules, run_rules

MAX_ROUNDS = 8
# Fixes run in stages, the rules re-checked between them: a probe is repaired in place (stage 0)
# before a startupProbe is copied from it (1), and the grace period is sized (2) once the
# preStop sleep it must cover exists (1).
STAGES = {"PRB007": 0, "PRB009": 0, "PRB010": 0, "PRB011": 0, "PRB005": 1, "PRB015": 1, "PRB016": 2}

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


def findings_for(text: str, path: str, policy: Policy) -> tuple[ManifestSet, list[Finding]]:
    """The PRB findings a fixer exists for, after suppressions (annotations, config, --select/--ignore)."""
    from tcpdoctor.sources import manifests

    mset = _manifests_of(text, path)
    rules = fixable_rules(policy)
    scoped = Policy(
        policy.select, policy.ignore, policy.config, [*policy.suppressors, manifests.suppressor(mset)]
    )
    return mset, scoped.apply(run_rules(manifests.bag_of(mset), rules))


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


def fix_text(text: str, path: str, policy: Policy | None = None, ctx: FixContext | None = None) -> FileFix:
    """The fixed text of one manifest file (raises InputError if it is not YAML)."""
    policy = policy or Policy()
    ctx = ctx or FixContext()
    result = FileFix(Path(path), text, text)
    crlf = "\r\n" in text  # edited as LF, written back with the file's own line ends
    current = text.replace("\r\n", "\n") if crlf else text
    first: dict[tuple[str, str], Location | None] = {}  # (rule, subject) -> position in the user's file
    for round_number in range(MAX_ROUNDS):
        mset, findings = findings_for(current, path, policy)
        if round_number == 0:
            first = {(f.rule, str(f.subject)): f.location for f in reversed(findings)}
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


def attach_patches(findings: list[Finding]) -> list[Finding]:
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
        patch = _single_patch(finding, Path(finding.location.path))
        out.append(replace(finding, fix=Fix(finding.fix.description, patch)) if patch else finding)
    return out


def _single_patch(finding: Finding, path: Path) -> str | None:
    if path.suffix.lower() == ".json":
        return None
    try:
        text = path.read_text(encoding="utf-8")
        mset = _manifests_of(text, str(path))
        yf = split_documents(str(path), text)
    except (OSError, UnicodeDecodeError, InputError):
        return None
    fixed, applied = _one_round(yf, mset, [finding], FixContext())
    if not applied or fixed == text:
        return None
    return FileFix(path, text, fixed, applied).diff()
