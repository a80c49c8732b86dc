"""The manifest source: Kubernetes YAML/JSON files → a :class:`ManifestSet` of positioned records.

Public API (used by `tcpdoctor scan`, `tcpdoctor fix` and other sources)::

    from tcpdoctor.sources import manifests

    mset = manifests.collect([Path("deploy")])          # scan: walk, load (fast C loader), extract
    docs = manifests.read_file(path)                    # one file's documents (PosMap data)
    docs = manifests.read_file(path, roundtrip=True)    # ruamel CommentedMap data, editable
    mset = manifests.extract(docs)                      # records; .raw are the loaded nodes
    rt   = manifests.roundtrip_yaml()                   # the YAML instance to dump fixed docs with
    skip = manifests.suppressor(mset)                   # tcpdoctor.io/ignore annotations → Suppressor

``read_file`` raises :class:`ParseFailure` (``.error`` is a ParseError → rule TDR001) or
:class:`SkippedFile` (``.skip``: binary, too large); ``collect`` never raises for a bad file:
it records ``parse_errors`` and ``notes`` and goes on.

For `tcpdoctor fix`: load with ``roundtrip=True``, ``extract`` → ``Workload.raw``,
``Container.raw`` and ``Probe.raw`` are then the ruamel ``CommentedMap`` nodes of the
document, so a fix edits them in place and dumps ``[d.data for d in docs]`` with
``roundtrip_yaml().dump_all``. Run the PRB rules on that set with
``run_rules(bag_of(mset))``.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tcpdoctor.evidence.manifests import ManifestSet, ParseError
from tcpdoctor.model import Finding
from tcpdoctor.rules.registry import EvidenceBag, matches
from tcpdoctor.sources.files import walk
from tcpdoctor.sources.manifests.extract import extract, kube_objects, parse_cpu
from tcpdoctor.sources.manifests.loader import (
    Document,
    ManifestReadError,
    ParseFailure,
    PosMap,
    PosSeq,
    SkippedFile,
    load_text,
    read_file,
    roundtrip_yaml,
)

__all__ = [
    "Document",
    "ManifestReadError",
    "ParseFailure",
    "PosMap",
    "PosSeq",
    "SkippedFile",
    "add_file",
    "bag_of",
    "collect",
    "collect_files",
    "extract",
    "gc_paused",
    "is_helm_template",
    "kube_objects",
    "load_text",
    "parse_cpu",
    "read_file",
    "roundtrip_yaml",
    "suppressor",
]


def is_helm_template(path: Path) -> bool:
    """An unrendered Helm chart template (``templates/`` of a folder with Chart.yaml)."""
    if path.parent.name != "templates":
        return False
    return (path.parent.parent / "Chart.yaml").is_file() or (path.parent.parent / "Chart.yml").is_file()


def add_file(mset: ManifestSet, path: Path) -> None:
    """Read one file into ``mset``: its records, or a parse error, or a note. Never raises for bad input."""
    mset.files.append(str(path))
    if is_helm_template(path):
        mset.notes.append(f"{path}: skipped, unrendered Helm template (scan `helm template` output instead)")
        return
    try:
        docs = read_file(path)
    except ParseFailure as exc:
        mset.parse_errors.append(exc.error)
        return
    except SkippedFile as exc:
        mset.notes.append(exc.skip.note())
        mset.unreadable.append(ParseError(str(path), exc.skip.reason))
        return
    extract(docs, mset)


def collect_files(files: list[Path], progress: Callable[[Path], None] | None = None) -> ManifestSet:
    """A ManifestSet from a list of manifest files (already walked); ``progress`` is called per file."""
    mset = ManifestSet()
    with gc_paused():
        for path in files:
            add_file(mset, path)
            if progress is not None:
                progress(path)
    return mset


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while building many long-lived records.

    Every loaded document stays alive (records point into it), so each collection re-scans a
    growing heap for nothing: on 10,000 documents the collector alone cost as much as parsing.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        # everything allocated meanwhile sits in the youngest generation: without freezing, the
        # first collections after re-enabling would traverse all of it (a second per 10,000
        # documents), and again at interpreter exit. Frozen objects are still freed by reference
        # counting; only cycles among them are never collected (the records have none).
        gc.freeze()
        if was_enabled:
            gc.enable()


def collect(paths: list[Path], progress: Callable[[Path], None] | None = None) -> ManifestSet:
    """Walk ``paths`` (files or directories) and read every manifest under them."""
    found = walk(paths)
    mset = collect_files(found.manifests, progress)
    mset.notes.extend(s.note() for s in found.skipped)
    return mset


def bag_of(mset: ManifestSet) -> EvidenceBag:
    """An EvidenceBag holding just these manifests (kind "manifests")."""
    bag = EvidenceBag()
    bag.add("manifests", mset)
    return bag


def suppressor(mset: ManifestSet) -> Callable[[Finding], bool]:
    """A policy Suppressor: the ``tcpdoctor.io/ignore`` annotation of the object a finding is about.

    The annotation (on the object, or on a workload's pod template) lists rule IDs or prefixes
    (``"PRB003,PRB015"``, ``"PRB"``). A finding is matched to its object by file and subject
    (kind, namespace, name), so cross-layer rules that name the workload are silenced too.
    """
    ignored: dict[tuple[str, str, str | None, str], set[str]] = {}

    def note(path: str, kind: str, namespace: str | None, name: str, ids: set[str]) -> None:
        if ids:
            ignored.setdefault((path, kind, namespace, name), set()).update(ids)

    for w in mset.workloads:
        note(w.location.path, w.kind, w.namespace, w.name, w.ignored_rules())
    for s in mset.services:
        note(s.location.path, "Service", s.namespace, s.name, _ids(s.annotations))
    for o in mset.objects:
        note(o.location.path, o.kind, o.namespace, o.name, _ids(o.annotations))
    by_subject: dict[tuple[str, str | None, str], set[str]] = {}
    for (_, kind, namespace, name), ids in ignored.items():
        by_subject.setdefault((kind, namespace, name), set()).update(ids)

    manifest_files = set(mset.files)

    def suppressed(finding: Finding) -> bool:
        subj = finding.subject
        if not ignored or subj.kind is None or subj.name is None:
            return False
        if finding.location is not None and finding.location.path in manifest_files:
            ids = ignored.get((finding.location.path, subj.kind, subj.namespace, subj.name))
        else:  # a cross-layer finding located elsewhere (Go source): match the object by name
            ids = by_subject.get((subj.kind, subj.namespace, subj.name))
        return bool(ids) and matches(finding.rule, ids or ())

    return suppressed


def _ids(annotations: dict[str, str]) -> set[str]:
    value = annotations.get("tcpdoctor.io/ignore", "")
    return {p.strip().upper() for p in value.split(",") if p.strip()}
