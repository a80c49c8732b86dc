"""TDR: problems with tcpdoctor's own input (a file it could not read as what it claims to be).

TDR001 reads the ``parse_errors`` list of every kind of evidence in the bag that has one
(manifests today; any source whose evidence object carries ``parse_errors`` of records with
``path``, ``message``, ``line`` and ``column`` gets the same rule for free).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tcpdoctor.model import Evidence, Finding, Fix, Location, Severity, Subject
from tcpdoctor.rules.registry import EvidenceBag, rule

_SOURCE_NAMES = {"manifests": "manifest", "go": "go"}


def _parse_errors(bag: EvidenceBag) -> Iterator[tuple[str, Any]]:
    for kind in sorted(bag.kinds):
        for error in getattr(bag.get(kind), "parse_errors", None) or ():
            yield kind, error


@rule(
    "TDR001",
    name="input-not-parsed",
    severity=Severity.ERROR,
    summary="input could not be parsed",
    needs=(),
)
def input_not_parsed(bag: EvidenceBag) -> Iterator[Finding]:
    for kind, error in _parse_errors(bag):
        loc = Location(error.path, error.line, error.column)
        where = f"line {error.line}, column {error.column}" if error.line is not None else "the file"
        yield input_not_parsed.finding(
            f"{error.path} could not be parsed ({where}): {error.message}; nothing in it was checked",
            location=loc,
            subject=Subject(path=error.path),
            evidence=[Evidence(_SOURCE_NAMES.get(kind, kind), error.message, loc)],
            fix=Fix(
                "fix the syntax (kubectl apply --dry-run=client -f FILE shows the same error), or move the "
                "file out of the scanned paths"
            ),
        )
