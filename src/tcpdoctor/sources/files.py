"""The tree walker every source uses: which files under the scanned PATHs are manifests or Go.

    found = walk([Path("deploy"), Path("cmd")])
    found.manifests      # .yaml / .yml / .json files, sorted
    found.go             # .go files (``_test.go`` only with include_go_tests=True)
    found.skipped        # (path, reason): binary, too large, unreadable; shown as notes

Directories are walked recursively, skipping ``.git``, ``node_modules``, ``vendor``,
``testdata`` (Go's fixture folders), ``.venv``, ``__pycache__`` and every hidden directory. A file named explicitly on the
command line is always taken (as a manifest unless it ends in ``.go``), whatever its
suffix, the way ``kubectl apply -f FILE`` takes it. A path that does not exist is bad
usage (:class:`~tcpdoctor.model.InputError`, exit 2).

:func:`read_text` is how a source reads one file: size limit, binary detection and
decoding (UTF-8, UTF-8/16/32 with a byte-order mark) in one place, returning a
:class:`Skip` reason instead of raising.
"""

from __future__ import annotations

import codecs
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tcpdoctor.model import InputError

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
GO_SUFFIX = ".go"
SKIP_DIRS = frozenset({".git", "node_modules", "vendor", ".venv", "venv", "__pycache__", "testdata"})
MAX_FILE_BYTES = 20 * 1024 * 1024  # larger files are skipped with a note, never loaded
_SNIFF_BYTES = 8192

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


@dataclass(frozen=True)
class Skip:
    """A file left out of the scan, and why (shown as a note in the report)."""

    path: Path
    reason: str

    def note(self) -> str:
        return f"{self.path}: skipped, {self.reason}"


@dataclass
class FileSet:
    manifests: list[Path] = field(default_factory=list)
    go: list[Path] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.manifests) + len(self.go)


def _hidden_or_skipped(name: str) -> bool:
    return name in SKIP_DIRS or (name.startswith(".") and name not in (".", ".."))


def classify(path: Path) -> str | None:
    """ "manifests", "go" or None (not ours) from the file name."""
    suffix = path.suffix.lower()
    if suffix in MANIFEST_SUFFIXES:
        return "manifests"
    if suffix == GO_SUFFIX:
        return "go"
    return None


def walk(paths: Iterable[Path], *, include_go_tests: bool = False) -> FileSet:
    """Every manifest and Go file under ``paths`` (files or directories), each once, sorted."""
    found = FileSet()
    seen: set[Path] = set()

    def add(path: Path, explicit: bool) -> None:
        kind = classify(path)
        if kind is None and explicit:
            kind = "manifests"
        if kind is None:
            return
        key = path.resolve()
        if key in seen:
            return
        seen.add(key)
        if kind == "go":
            if include_go_tests or not path.name.endswith("_test.go"):
                found.go.append(path)
        else:
            found.manifests.append(path)

    for root in paths:
        if not root.exists():
            raise InputError(f"{root}: no such file or directory")
        if root.is_file():
            add(root, explicit=True)
            continue
        if not root.is_dir():
            found.skipped.append(Skip(root, "not a regular file or directory"))
            continue
        for folder, dirs, files in os.walk(root, onerror=None):
            dirs[:] = sorted(d for d in dirs if not _hidden_or_skipped(d))
            for name in sorted(files):
                if name.startswith("."):
                    continue
                candidate = Path(folder) / name
                if candidate.is_file():
                    add(candidate, explicit=False)
    found.manifests.sort()
    found.go.sort()
    return found


def looks_binary(head: bytes) -> bool:
    """NUL bytes (without a UTF-16/32 byte-order mark) or mostly non-text bytes."""
    if not head:
        return False
    if any(head.startswith(bom) for bom, _ in _BOMS):
        return False
    if b"\x00" in head:
        return True
    control = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13, 27))
    return control > len(head) // 10


def decode(data: bytes) -> str:
    """Text from bytes: a byte-order mark picks the encoding, else UTF-8 (strict).

    Raises UnicodeDecodeError (with its byte offset) when the bytes are not valid text.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(encoding)
    return data.decode("utf-8")


def read_text(path: Path, *, max_bytes: int | None = None) -> str | Skip:
    """The file's text, or a :class:`Skip` when it is too large, binary or unreadable.

    Undecodable text is *not* a skip: it raises UnicodeDecodeError so that the caller can
    report it as a parse error with its position.
    """
    if max_bytes is None:
        max_bytes = MAX_FILE_BYTES
    try:
        size = path.stat().st_size
        if size > max_bytes:
            return Skip(path, f"{size / 1048576:.1f} MB is over the {max_bytes // 1048576} MB limit")
        with path.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        return Skip(path, f"cannot be read ({exc.strerror or exc})")
    if len(data) > max_bytes:
        return Skip(path, f"over the {max_bytes // 1048576} MB limit")
    if looks_binary(data[:_SNIFF_BYTES]):
        return Skip(path, "binary file")
    return decode(data)
