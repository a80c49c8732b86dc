"""The running kernel's tracepoint formats (``/sys/kernel/tracing/events/<sys>/<name>/format``).

Programs adapt to the fields a tracepoint really has, and enum values (the reset reason
``enum sk_rst_reason``, the drop reason ``enum skb_drop_reason``) are decoded from the
``__print_symbolic`` tables of the format file, never from a hard-coded list: the numbers
shift between kernels (NETFILTER_DROP is 12 on 6.18, another number elsewhere).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from tcpdoctor.evidence.tcp_states import TCP_STATES
from tcpdoctor.model import InputError

TRACEFS_CANDIDATES = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))
MOUNT_HINT = "mount -t tracefs tracefs /sys/kernel/tracing"


def state_name(number: int) -> str:
    """A TCP state number as its name; 0 (no socket, e.g. a NO_SOCKET reset) is "NONE"."""
    return TCP_STATES.get(number, "NONE" if number == 0 else str(number))


_FIELD = re.compile(
    r"field:(?P<decl>[^;]+);\s*offset:(?P<offset>\d+);\s*size:(?P<size>\d+);\s*signed:(?P<signed>\d)"
)
_SYMBOLIC = re.compile(r"__print_symbolic\(\s*REC->(?P<field>\w+)\s*,")
_PAIR = re.compile(r"\{\s*(-?\d+)\s*,\s*\"([^\"]*)\"\s*\}")


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    offset: int
    size: int
    signed: bool
    array: int | None = None  # element count for `__u8 saddr[28]`


@dataclass
class TracepointFormat:
    category: str
    name: str
    fields: dict[str, Field] = field(default_factory=dict)
    enums: dict[str, dict[int, str]] = field(default_factory=dict)  # field -> value -> symbol

    @property
    def probe(self) -> str:
        return f"tracepoint:{self.category}:{self.name}"

    def has(self, *names: str) -> bool:
        return all(n in self.fields for n in names)

    def symbol(self, field_name: str, value: int) -> str:
        """The enum name of ``value`` (e.g. reason 1 -> NO_SOCKET), or ``"<value>"`` if unknown."""
        return self.enums.get(field_name, {}).get(value, str(value))

    def value(self, field_name: str, symbol: str) -> int | None:
        for number, name in self.enums.get(field_name, {}).items():
            if name == symbol:
                return number
        return None


def parse_format(text: str, category: str = "", name: str = "") -> TracepointFormat:
    """Parse one format file: its fields and the symbol table of every ``__print_symbolic``."""
    fmt = TracepointFormat(category=category, name=name)
    for line in text.splitlines():
        if line.startswith("name:") and not name:
            fmt.name = line.split(":", 1)[1].strip()
        m = _FIELD.search(line)
        if not m:
            continue
        decl = m["decl"].strip()
        array: int | None = None
        am = re.search(r"\[(\d+)\]\s*$", decl)
        if am:
            array = int(am.group(1))
            decl = decl[: am.start()].strip()
        parts = decl.replace("*", " * ").split()
        fname = parts[-1]
        if fname.startswith("common_"):
            continue
        fmt.fields[fname] = Field(
            name=fname,
            type=" ".join(parts[:-1]),
            offset=int(m["offset"]),
            size=int(m["size"]),
            signed=m["signed"] == "1",
            array=array,
        )
    print_fmt = text.split("print fmt:", 1)[1] if "print fmt:" in text else ""
    for sm in _SYMBOLIC.finditer(print_fmt):
        table = _symbol_table(print_fmt, sm.end())
        if table:
            fmt.enums.setdefault(sm["field"], {}).update(table)
    return fmt


def _symbol_table(text: str, start: int) -> dict[int, str]:
    """The ``{ N, "NAME" }`` pairs of one __print_symbolic call starting at ``start``."""
    depth, end = 1, start
    while end < len(text) and depth:
        if text[end] == "(":
            depth += 1
        elif text[end] == ")":
            depth -= 1
        end += 1
    return {int(num): sym for num, sym in _PAIR.findall(text[start:end])}


def tracefs_root() -> Path:
    """The mounted tracefs, or InputError naming the mount command."""
    for base in TRACEFS_CANDIDATES:
        if (base / "events").is_dir():
            return base
    raise InputError(f"tracefs is not mounted: run `{MOUNT_HINT}` (as root) and retry")


class KernelFormats:
    """Lazy reader of the running kernel's tracepoint formats."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root if root is not None else tracefs_root()
        self._cache: dict[str, TracepointFormat | None] = {}

    def get(self, category: str, name: str) -> TracepointFormat | None:
        key = f"{category}:{name}"
        if key not in self._cache:
            path = self.root / "events" / category / name / "format"
            try:
                text = path.read_text()
            except OSError:
                self._cache[key] = None
            else:
                self._cache[key] = parse_format(text, category, name)
        return self._cache[key]

    def require_readable(self) -> None:
        if not os.access(self.root / "events", os.R_OK):
            raise InputError(f"{self.root}/events is not readable: tracing needs root")
