"""Evaluate Go expressions to configuration values: durations, numbers, strings, bools.

What it follows: literals, `time.Duration` arithmetic (``5 * time.Second``,
``time.Duration(n) * time.Second``, ``2*time.Minute + 30*time.Second``), local
variables, package constants and variables (any file of the package), flag
defaults (``flag.Duration("idle", 30*time.Second, ...)``, ``flag.DurationVar``),
env-var helpers with a default (``getenv("ADDR", ":8080")``), string
concatenation and ``fmt.Sprintf(":%d", port)``. Anything else (``os.Getenv``, a
config struct field, a function result) is *unknown*, never zero.

A duration is held in seconds. Go's untyped constants in a Duration context are
nanoseconds (``ReadTimeout: 5`` is 5ns), which :func:`go_value` applies when the
field is a duration.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from tree_sitter import Node

from tcpdoctor.evidence.golang import GoValue, Scalar
from tcpdoctor.sources.golang import parse
from tcpdoctor.sources.golang.context import FileContext
from tcpdoctor.sources.golang.parse import arguments, call_parts, text

UNITS = {
    "Nanosecond": 1e-9,
    "Microsecond": 1e-6,
    "Millisecond": 1e-3,
    "Second": 1.0,
    "Minute": 60.0,
    "Hour": 3600.0,
}
FLAG_FUNCS = {"Duration", "Int", "Int64", "Uint", "Uint64", "String", "Bool", "Float64"}
ENV_HELPER = re.compile(r"(?i)env|getenv|lookup|default|config|setting")
MAX_DEPTH = 12
PKGREF = "pkgref:"  # origin of an unknown that names an exported value of another package


@dataclass(frozen=True)
class Val:
    kind: str  # dur | num | str | bool
    value: Scalar
    origin: str = "literal"


class Unknown(Exception):
    def __init__(self, text: str, origin: str = "runtime") -> None:
        super().__init__(text)
        self.text = text
        self.origin = origin


def go_value(ctx: FileContext, node: Node | None, *, duration: bool = False) -> GoValue:
    """The GoValue of an expression (``duration``: the field is a time.Duration)."""
    if node is None:
        return GoValue.unset()
    loc = ctx.loc(node)
    src = text(node)
    try:
        val = evaluate(ctx, node)
    except Unknown as exc:
        return GoValue.unknown(src, loc, exc.origin)
    value: Scalar = val.value
    if duration and val.kind == "num" and not isinstance(value, bool | str):
        value = float(value) * 1e-9  # an untyped constant in a Duration is nanoseconds
    elif duration and val.kind != "dur":
        return GoValue.unknown(src, loc, "runtime")
    if duration:
        value = float(value)
    return GoValue("set", value, loc, src, val.origin)


def evaluate(ctx: FileContext, node: Node, depth: int = 0) -> Val:
    if depth > MAX_DEPTH:
        raise Unknown(text(node))
    node = parse.unparen(node)
    kind = node.type
    if kind == "int_literal":
        return Val("num", _int(text(node)))
    if kind == "float_literal":
        return Val("num", float(text(node).replace("_", "")))
    if kind in ("interpreted_string_literal", "raw_string_literal"):
        return Val("str", parse.string_literal(node) or "")
    if kind == "true":
        return Val("bool", True)
    if kind == "false":
        return Val("bool", False)
    if kind == "identifier":
        return _identifier(ctx, node, depth)
    if kind == "selector_expression":
        return _selector(ctx, node, depth)
    if kind == "binary_expression":
        return _exact(_binary, ctx, node, depth)
    if kind == "unary_expression":
        op = text(node.child_by_field_name("operator"))
        operand = node.child_by_field_name("operand")
        if operand is None:
            raise Unknown(text(node))
        inner = evaluate(ctx, operand, depth + 1) if op == "*" else _exact(evaluate, ctx, operand, depth + 1)
        if op == "-" and inner.kind in ("num", "dur") and not isinstance(inner.value, bool | str):
            return Val(inner.kind, -inner.value, inner.origin)
        if op == "*":  # *flagPointer
            return inner
        if op == "!" and inner.kind == "bool":
            return Val("bool", not inner.value, inner.origin)
        raise Unknown(text(node))
    if kind in ("call_expression", "type_conversion_expression"):
        return _exact(_call, ctx, node, depth)
    raise Unknown(text(node))


def _exact(step: Callable[[FileContext, Node, int], Val], ctx: FileContext, node: Node, depth: int) -> Val:
    """A reference to another package's value is resolved later only when it *is* the value:
    inside arithmetic or a call it becomes a plain unknown (``2 * config.Idle`` is not ``config.Idle``)."""
    try:
        return step(ctx, node, depth)
    except Unknown as exc:
        if exc.origin.startswith(PKGREF):
            raise Unknown(text(node)) from None
        raise


def _int(raw: str) -> int:
    raw = raw.replace("_", "").lower()
    if raw.startswith("0x"):
        return int(raw, 16)
    if raw.startswith("0o"):
        return int(raw[2:], 8)
    if raw.startswith("0b"):
        return int(raw, 2)
    if len(raw) > 1 and raw.startswith("0"):
        return int(raw, 8)
    return int(raw)


def _identifier(ctx: FileContext, node: Node, depth: int) -> Val:
    name = text(node)
    if name == "nil":
        raise Unknown(name, "nil")
    found = ctx.lookup(name, node)
    if found is None:
        raise Unknown(name)
    value_node, where, origin = found
    if value_node is None:
        source = ctx.param_source(name, node) if origin == "param" else None
        if source is None:
            raise Unknown(name, "param" if origin == "param" else "runtime")
        passed = evaluate(source[1], source[0], depth + 1)
        return Val(passed.kind, passed.value, "call-site" if passed.origin == "literal" else passed.origin)
    val = evaluate(where, value_node, depth + 1)
    if origin in ("flag-default", "env-default") or val.origin in ("flag-default", "env-default"):
        return Val(val.kind, val.value, val.origin if val.origin != "literal" else origin)
    return Val(val.kind, val.value, origin if val.origin == "literal" else val.origin)


def _selector(ctx: FileContext, node: Node, depth: int) -> Val:
    operand = text(node.child_by_field_name("operand"))
    field = text(node.child_by_field_name("field"))
    if ctx.is_pkg(operand, "time") and field in UNITS:
        return Val("dur", UNITS[field])
    imported = ctx.pkg_of(operand)
    if imported is not None and field[:1].isupper():
        # a constant of another package: resolved when every package has been read (extract.link)
        raise Unknown(text(node), f"{PKGREF}{imported}:{field}")
    raise Unknown(text(node))


def _binary(ctx: FileContext, node: Node, depth: int) -> Val:
    left_node = node.child_by_field_name("left")
    right_node = node.child_by_field_name("right")
    op = text(node.child_by_field_name("operator"))
    if left_node is None or right_node is None:
        raise Unknown(text(node))
    a = evaluate(ctx, left_node, depth + 1)
    b = evaluate(ctx, right_node, depth + 1)
    origin = next((o for o in (a.origin, b.origin) if o not in ("literal", "const")), a.origin)
    if a.kind == "str" and b.kind == "str" and op == "+":
        return Val("str", str(a.value) + str(b.value), origin)
    if a.kind in ("str", "bool") or b.kind in ("str", "bool"):
        raise Unknown(text(node))
    x, y = float(a.value), float(b.value)
    kinds = {a.kind, b.kind}
    out_kind = "dur" if "dur" in kinds else "num"
    if op == "*":
        # Duration * Duration is nanoseconds * nanoseconds in Go: scale back to seconds
        result = x * y * 1e9 if kinds == {"dur"} else x * y
    elif op == "/":
        if y == 0:
            raise Unknown(text(node))
        result = x / y
        if kinds == {"dur"}:
            out_kind = "num"
        elif a.kind == "num" and b.kind == "num" and isinstance(a.value, int) and isinstance(b.value, int):
            return Val("num", int(a.value) // int(b.value), origin)
    elif op in ("+", "-"):
        if a.kind == "dur" and b.kind == "num":
            y *= 1e-9
        elif a.kind == "num" and b.kind == "dur":
            x *= 1e-9
        result = x + y if op == "+" else x - y
    else:
        raise Unknown(text(node))
    if out_kind == "num" and isinstance(a.value, int) and isinstance(b.value, int) and op != "/":
        return Val("num", int(result), origin)
    return Val(out_kind, result, origin)


def _call(ctx: FileContext, node: Node, depth: int) -> Val:
    if node.type == "type_conversion_expression":
        typ = text(node.child_by_field_name("type"))
        converted = node.child_by_field_name("operand")
        if converted is not None and typ.endswith("Duration"):
            inner = evaluate(ctx, converted, depth + 1)
            if inner.kind in ("num", "dur") and not isinstance(inner.value, bool | str):
                seconds = float(inner.value) * (1e-9 if inner.kind == "num" else 1.0)
                return Val("dur", seconds, inner.origin)
        raise Unknown(text(node))
    operand, name, _ = call_parts(node)
    args = arguments(node)
    if ctx.is_pkg(operand, "time") and name == "Duration" and len(args) == 1:
        inner = evaluate(ctx, args[0], depth + 1)
        if inner.kind == "num" and not isinstance(inner.value, bool | str):
            return Val("dur", float(inner.value) * 1e-9, inner.origin)
        if inner.kind == "dur":
            return inner
        raise Unknown(text(node))
    if ctx.is_pkg(operand, "flag"):
        if name in FLAG_FUNCS and len(args) >= 2:
            return _with_origin(evaluate(ctx, args[1], depth + 1), "flag-default")
        raise Unknown(text(node), "flag")
    if ctx.is_pkg(operand, "os") and name in ("Getenv", "LookupEnv"):
        raise Unknown(text(node), "env")
    if ctx.is_pkg(operand, "fmt") and name == "Sprintf" and args:
        return _sprintf(ctx, args, depth)
    if ctx.is_pkg(operand, "net") and name == "JoinHostPort" and len(args) == 2:
        host = evaluate(ctx, args[0], depth + 1)
        port = evaluate(ctx, args[1], depth + 1)
        return Val("str", f"{host.value}:{port.value}", port.origin)
    if ctx.is_pkg(operand, "strconv") and name == "Itoa" and len(args) == 1:
        inner = evaluate(ctx, args[0], depth + 1)
        return Val("str", str(inner.value), inner.origin)
    # getenv("ADDR", ":8080"), envDuration("IDLE", 30*time.Second), cfg.GetDuration("x", 5*time.Second)
    if len(args) >= 2 and ENV_HELPER.search(name or operand) and _is_string_key(args[0]):
        try:
            return _with_origin(evaluate(ctx, args[-1], depth + 1), "env-default")
        except Unknown:
            pass
    raise Unknown(text(node))


def _is_string_key(node: Node) -> bool:
    return node.type in ("interpreted_string_literal", "raw_string_literal")


def _with_origin(val: Val, origin: str) -> Val:
    return Val(val.kind, val.value, origin)


def _sprintf(ctx: FileContext, args: list[Node], depth: int) -> Val:
    fmt = evaluate(ctx, args[0], depth + 1)
    if fmt.kind != "str":
        raise Unknown(text(args[0]))
    values = [evaluate(ctx, a, depth + 1) for a in args[1:]]
    it = iter(values)
    origin = next((v.origin for v in values if v.origin not in ("literal", "const")), "literal")

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "%%":
            return "%"
        try:
            return str(next(it).value)
        except StopIteration:
            raise Unknown(str(fmt.value)) from None

    return Val("str", re.sub(r"%%|%[-+# 0-9.]*[dsvq]", sub, str(fmt.value)), origin)


def port_of(value: GoValue) -> int | None:
    """The TCP port of a listen address value: ":8080", "0.0.0.0:8080", "[::]:8080"."""
    if not value.is_set or not isinstance(value.value, str):
        return None
    addr = value.value
    if ":" not in addr:
        return None
    port = addr.rsplit(":", 1)[1]
    return int(port) if port.isdigit() else None


def string_value(ctx: FileContext, node: Node | None) -> str | None:
    """The value of a string expression when it can be evaluated, else None."""
    if node is None:
        return None
    try:
        val = evaluate(ctx, node)
    except Unknown:
        return None
    return str(val.value) if val.kind == "str" else None
