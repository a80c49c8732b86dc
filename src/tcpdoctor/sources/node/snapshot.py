"""The versioned JSON snapshot of ``tcpdoctor node --snapshot-out`` / ``--from``."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tcpdoctor.evidence.node import NodeSnapshot
from tcpdoctor.model import InputError


def write(snapshot: NodeSnapshot, path: Path) -> None:
    """Written whole (temporary file, then rename): a snapshot is never left half-written."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(json.dumps(snapshot.to_dict(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"{path}: {exc.strerror or exc}") from None


def read(path: Path) -> NodeSnapshot:
    """A snapshot file; bad input raises InputError with the file and the position or field."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}:{exc.colno}: not JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}:1:1: a node snapshot is a JSON object")
    try:
        return NodeSnapshot.from_dict(data)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{path}: not a tcpdoctor node snapshot: {exc}") from None
