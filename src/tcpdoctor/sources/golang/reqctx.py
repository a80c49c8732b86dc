"""Which context a call runs under, and the deadline it carries.

Shared by the handler extractor (the I/O of a health check: ``db.PingContext(ctx)``,
``client.Do(req)``) and the client extractor (every outgoing request):

- :func:`trace_context` follows a context expression back through variables and
  ``context.WithCancel/WithValue`` to ``context.WithTimeout`` (a deadline, with its
  value, the shorter of the parent's and its own), ``context.WithDeadline`` (a deadline
  of unknown length), ``context.Background/TODO`` (none), ``r.Context()`` (the incoming
  request's: no deadline of its own) or a parameter (the caller's);
- :func:`request_context` finds the context an ``*http.Request`` carries into
  ``client.Do(req)``: ``http.NewRequestWithContext(ctx, ...)``, ``req.WithContext(ctx)``,
  or a later ``req = req.WithContext(ctx)``.
"""

from __future__ import annotations

from tree_sitter import Node

from tcpdoctor.evidence.golang import GoValue
from tcpdoctor.sources.golang import parse, values
from tcpdoctor.sources.golang.context import FileContext, FuncSpan
from tcpdoctor.sources.golang.parse import arguments, call_parts, text

HTTP = "net/http"
WITH_TIMEOUT = frozenset({"WithTimeout", "WithTimeoutCause"})
WITH_DEADLINE = frozenset({"WithDeadline", "WithDeadlineCause"})
MAX_DEPTH = 6


def trace_context(ctx: FileContext, node: Node | None, depth: int = 0) -> tuple[str, GoValue | None]:
    """(origin, deadline) of a context expression.

    origin: deadline | background | caller | request | unknown. The deadline is the timeout of
    the ``context.WithTimeout`` it derives from (unknown for ``WithDeadline``), None otherwise.
    """
    if node is None or depth > MAX_DEPTH:
        return "unknown", None
    node = parse.unparen(node)
    if node.type == "identifier":
        found = ctx.lookup(text(node), node)
        if found is None:
            return "unknown", None
        value, where, origin = found
        if value is None:
            return ("caller" if origin == "param" else "unknown"), None
        return trace_context(where, value, depth + 1)
    if node.type != "call_expression":
        return "unknown", None
    operand, name, _ = call_parts(node)
    args = arguments(node)
    if ctx.is_pkg(operand, "context"):
        if name in ("Background", "TODO"):
            return "background", None
        parent_origin, parent = trace_context(ctx, args[0], depth + 1) if args else ("unknown", None)
        if name in WITH_TIMEOUT and len(args) > 1:
            own = values.go_value(ctx, args[1], duration=True)
            return "deadline", _shorter(own, parent)
        if name in WITH_DEADLINE:
            return "deadline", _shorter(GoValue.unknown(text(node), ctx.loc(node)), parent)
        return parent_origin, parent  # WithCancel, WithValue, WithoutCancel ...: the parent's
    if name == "Context" and not args:  # r.Context() / c.Request.Context(): no deadline of its own
        return "request", None
    return "unknown", None


def _shorter(own: GoValue, parent: GoValue | None) -> GoValue:
    """The deadline that fires first: a derived context never outlives its parent."""
    if parent is None:
        return own
    mine, theirs = own.seconds, parent.seconds
    if mine is not None and theirs is not None and 0 < theirs < mine:
        return parent
    return own


def request_of(ctx: FileContext, node: Node, depth: int = 0) -> Node | None:
    """The ``http.NewRequest*`` or ``req.WithContext`` call a request variable comes from."""
    node = parse.unparen(node)
    if node.type == "identifier" and depth < 4:
        found = ctx.lookup(text(node), node)
        if found is None or found[0] is None:
            return None
        return request_of(found[1], found[0], depth + 1)
    if node.type == "call_expression":
        operand, name, _ = call_parts(node)
        if ctx.is_pkg(operand, HTTP) and name in ("NewRequest", "NewRequestWithContext"):
            return node
        if name == "WithContext" and operand:
            return node
    return None


def later_with_context(ctx: FileContext, span: FuncSpan, var: str, before: int) -> Node | None:
    """The context argument of the last ``var = var.WithContext(ctx)`` (or ``var.WithContext(ctx)``
    passed on) in ``span`` before byte ``before``."""
    found: Node | None = None
    for call in ctx.caps.get("call", []):
        if span.start <= call.start_byte < min(span.end, before):
            operand, name, _ = call_parts(call)
            if name == "WithContext" and operand == var:
                args = arguments(call)
                found = args[0] if args else found
    return found


def request_context(ctx: FileContext, span: FuncSpan | None, request: Node, at: int) -> Node | None:
    """The context expression the request ``request`` (an argument of ``Do`` at byte ``at``) carries,
    or None when it was built without one (``http.NewRequest``)."""
    if span is not None and parse.unparen(request).type == "identifier":
        later = later_with_context(ctx, span, text(parse.unparen(request)), at)
        if later is not None:
            return later
    build = request_of(ctx, request)
    if build is None:
        return None
    args = arguments(build)
    if call_parts(build)[1] in ("WithContext", "NewRequestWithContext") and args:
        return args[0]
    return None
