"""The one currency of tcpdoctor: findings, and the small values they are made of.

Every source turns an artifact into evidence records; every rule turns evidence
into :class:`Finding` values; every reporter only formats findings. The JSON form
of these classes is the public contract of ``--format json`` (PRODUCT.md).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Severity(enum.IntEnum):
    """Ordered so that ``finding.severity >= threshold`` reads naturally."""

    INFO = 1
    WARNING = 2
    ERROR = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown severity {text!r} (expected error, warning or info)") from None


@dataclass(frozen=True, order=True)
class Location:
    """A position in an input file. Lines and columns are 1-based, as editors show them."""

    path: str
    line: int | None = None
    column: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "line": self.line, "column": self.column}

    def __str__(self) -> str:
        parts = [self.path]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)


@dataclass(frozen=True)
class Subject:
    """What a finding is about: a workload container, a Go declaration, a node or a connection.

    Only the fields that apply are set; ``to_dict`` drops the others.
    """

    kind: str | None = None
    namespace: str | None = None
    name: str | None = None
    container: str | None = None
    go: str | None = None
    path: str | None = None
    node: str | None = None
    connection: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    def __str__(self) -> str:
        if self.connection:
            return self.connection
        if self.go:
            return self.go
        if self.kind and self.name:
            text = f"{self.kind}/{self.name}"
            if self.namespace:
                text = f"{self.namespace}/{text}"
            if self.container:
                text += f" container {self.container}"
            return text
        if self.node:
            return f"node {self.node}"
        return self.path or self.name or "-"


@dataclass(frozen=True)
class Evidence:
    """One fact a finding reasons from, with where it was seen."""

    source: str  # manifest | go | node | pcap | trace | probe
    detail: str
    location: Location | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "detail": self.detail,
            "location": self.location.to_dict() if self.location else None,
        }


@dataclass(frozen=True)
class Fix:
    description: str
    patch: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"description": self.description, "patch": self.patch}


@dataclass
class Finding:
    rule: str
    severity: Severity
    title: str
    message: str
    location: Location | None = None
    subject: Subject = field(default_factory=Subject)
    evidence: list[Evidence] = field(default_factory=list)
    fix: Fix | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "severity": self.severity.label,
            "title": self.title,
            "message": self.message,
            "location": self.location.to_dict() if self.location else None,
            "subject": self.subject.to_dict(),
            "evidence": [e.to_dict() for e in self.evidence],
            "fix": self.fix.to_dict() if self.fix else None,
        }

    def sort_key(self) -> tuple[str, int, int, str]:
        loc = self.location
        return (loc.path if loc else "~", (loc.line or 0) if loc else 0, -int(self.severity), self.rule)


@dataclass(frozen=True)
class Input:
    """One artifact a report was made from (the ``inputs`` list of the JSON report)."""

    kind: str  # manifests | go | node | pcap | probe | trace
    path: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path}


class InputError(Exception):
    """Bad usage or unreadable input: the CLI prints it on one line and exits 2."""
