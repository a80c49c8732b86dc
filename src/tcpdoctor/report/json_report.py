"""`--format json`: exactly the report contract of PRODUCT.md (schema tcpdoctor/report/v1).

Written incrementally so that a streamed section (pcap connections) never sits in memory whole.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import IO, Any

from tcpdoctor import __version__
from tcpdoctor.report import Report, summary_counts

SCHEMA = "tcpdoctor/report/v1"


class RawJSON(str):
    """An item of a streamed section that is already serialised JSON: written as is (pcap fast lane)."""


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=_default)


def _default(value: Any) -> Any:
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _is_stream(value: Any) -> bool:
    return isinstance(value, Iterator) or (
        isinstance(value, Iterable) and not isinstance(value, str | bytes | dict | list | tuple)
    )


def write(report: Report, out: IO[str]) -> None:
    out.write("{\n")
    out.write(f'  "schema": {_dump(SCHEMA)},\n')
    out.write(f'  "tool": {_dump({"name": "tcpdoctor", "version": __version__})},\n')
    out.write(f'  "inputs": {_dump([i.to_dict() for i in report.inputs])},\n')
    for key, value in report.sections.items():
        if _is_stream(value):
            out.write(f"  {_dump(key)}: [")
            first = True
            for item in value:
                out.write("\n    " if first else ",\n    ")
                out.write(item if isinstance(item, RawJSON) else _dump(item))
                first = False
            out.write("\n  ],\n" if not first else "],\n")
        else:
            out.write(f"  {_dump(key)}: {_dump(value)},\n")
    findings = report.resolved_findings()
    out.write('  "findings": [')
    for i, f in enumerate(findings):
        out.write(("\n    " if i == 0 else ",\n    ") + _dump(f.to_dict()))
    out.write("\n  ],\n" if findings else "],\n")
    out.write(f'  "summary": {_dump(summary_counts(findings))}\n')
    out.write("}\n")
