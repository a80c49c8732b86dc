"""What a handler does: streaming, flushes, writes and their error checks, the request
context, blocking I/O and its deadlines, locks and channels, headers, heartbeats.

A handler is a function, method or closure taking an ``http.ResponseWriter``, a
``*gin.Context`` or an ``echo.Context``. Calls to helpers of the same package
(``s.checkDB(ctx)``, ``pingRedis(ctx)``) are followed two levels deep, so the I/O
of a health check written as a helper is still seen.
"""

from __future__ import annotations

import bisect

from tree_sitter import Node

from tcpdoctor.evidence.golang import Deadline, GoProgram, GoValue, Handler, IoCall, IoKind, SyncUse
from tcpdoctor.evidence.golang import handler_key as evidence_handler_key
from tcpdoctor.sources.golang import reqctx, values
from tcpdoctor.sources.golang.context import FileContext, FuncSpan
from tcpdoctor.sources.golang.parse import arguments, call_parts, keyed_fields, text

SQL_METHODS = frozenset(
    {
        "Query",
        "QueryContext",
        "QueryRow",
        "QueryRowContext",
        "Exec",
        "ExecContext",
        "Ping",
        "PingContext",
        "Begin",
        "BeginTx",
        "Prepare",
        "PrepareContext",
        "Get",
        "Select",
    }
)
HTTP_PKG_CALLS = frozenset({"Get", "Post", "Head", "PostForm"})
WRITE_FUNCS = frozenset({"Fprintf", "Fprint", "Fprintln", "WriteString", "Copy"})
RESPONSE_METHODS = frozenset({"Write", "WriteString", "Encode", "SSEvent", "Render"})
FOLLOW_DEPTH = 2


def handler_style(ctx: FileContext, span: FuncSpan) -> str | None:
    for typ in span.params.values():
        bare = typ.lstrip("*")
        if "." not in bare:
            continue
        pkg, name = bare.split(".", 1)
        imp = ctx.pkg_of(pkg) or ""
        if name == "ResponseWriter" and imp == "net/http":
            return "net/http"
        if name == "Context" and "gin-gonic/gin" in imp:
            return "gin"
        if name == "Context" and "labstack/echo" in imp:
            return "echo"
    return None


def canonical_header(name: str) -> str:
    return "-".join(part.capitalize() for part in name.split("-"))


def _calls_in(ctx: FileContext, span: FuncSpan) -> list[Node]:
    return _in_range(ctx, "call", span)


def _in_range(ctx: FileContext, capture: str, span: FuncSpan) -> list[Node]:
    nodes = ctx.caps.get(capture, [])
    starts = ctx.starts_of(capture)
    return nodes[bisect.bisect_left(starts, span.start) : bisect.bisect_left(starts, span.end)]


def classify_io(ctx: FileContext, operand: str, name: str, args: list[Node]) -> IoKind | None:
    low = operand.lower()
    if ctx.is_pkg(operand, "net/http") and name in HTTP_PKG_CALLS:
        return "http"
    if ctx.is_pkg(operand, "net") and name.startswith("Dial"):
        return "net"
    if name.startswith("Dial") and "dialer" in low:
        return "net"
    if name == "Do" and ("client" in low or "http" in low):
        return "http"
    if name == "Do" and len(args) == 1 and reqctx.request_of(ctx, args[0]) is not None:
        return "http"  # deps.Do(req) where req comes from http.NewRequest*: any client's name
    if name in ("Get", "Post", "Head") and "client" in low and args:
        return "http"
    if ("redis" in low or "rdb" in low) and (args or name == "Ping"):
        return "redis"
    if name in SQL_METHODS and any(k in low for k in ("db", "sql", "pool", "conn", "tx", "store", "pg")):
        return "sql"
    if name in ("Ping", "PingContext"):
        return "other"
    if ctx.imports_like("google.golang.org/grpc") and "client" in low and args and _ctx_like(args[0]):
        return "grpc"
    if name == "Check" and "health" in low and args:
        return "grpc"
    return None


def _io_call(ctx: FileContext, span: FuncSpan, kind: IoKind, call: Node) -> IoCall:
    """A blocking call and the context that reaches it: its first argument when that is a context,
    or for ``client.Do(req)`` the context the request carries (NewRequestWithContext, WithContext)."""
    operand, name, _ = call_parts(call)
    args = arguments(call)
    context: Node | None = None
    if kind == "http" and name == "Do" and args:
        context = reqctx.request_context(ctx, span, args[0], call.start_byte)
    elif args and (name.endswith("Context") or _ctx_like(args[0])):
        context = args[0]
    io = IoCall(kind, f"{operand}.{name}" if operand else name, ctx.loc(call), context is not None)
    if context is not None:
        io.context_origin, io.deadline = reqctx.trace_context(ctx, context)
    return io


def _ctx_like(node: Node) -> bool:
    raw = text(node)
    return "ctx" in raw.lower() or raw.endswith("Context()")


def _is_response_target(raw: str, writer: str | None) -> bool:
    if writer and (raw == writer or raw.startswith(writer + ".") or raw.startswith(f"{writer}(")):
        return True
    return raw.endswith(".Writer") or raw.endswith("Response()") or raw.startswith("json.NewEncoder(")


def _write_checked(call: Node) -> bool:
    parent = call.parent
    if parent is None or parent.type == "expression_statement":
        return False
    if parent.type == "expression_list":
        stmt = parent.parent
        if stmt is not None and stmt.type in ("assignment_statement", "short_var_declaration"):
            left = stmt.child_by_field_name("left")
            if left is not None and all(text(n) == "_" for n in left.named_children):
                return False
    return parent.type != "go_statement" and parent.type != "defer_statement"


def _shared(ctx: FileContext, span: FuncSpan, target: str, at: Node) -> bool:
    if "(" in target:
        return False
    root = target.split(".", 1)[0].lstrip("*&")
    if span.receiver and root == span.receiver:
        return True
    if root in ctx.definitions(span) or root in span.params:
        return False
    found = ctx.lookup(root, at)
    return (found is not None and found[2] in ("var", "const")) or root in ctx.package.bindings


def _deadline(ctx: FileContext, args: list[Node], call: Node) -> Deadline:
    parent = args[0] if args else None
    from_request = False
    if parent is not None:
        raw = text(parent)
        from_request = "Context()" in raw or ".Request" in raw
        if not from_request and parent.type == "identifier":
            found = ctx.lookup(raw, parent)
            from_request = bool(found and found[0] is not None and "Context()" in text(found[0]))
    timeout = values.go_value(ctx, args[1], duration=True) if len(args) > 1 else GoValue.unknown()
    return Deadline(timeout=timeout, location=ctx.loc(call), from_request=from_request)


def collect(ctx: FileContext, span: FuncSpan, handler: Handler, *, top: bool, depth: int = 0) -> None:
    """Add what ``span`` does to ``handler`` (``top``: span is the handler itself, not a helper)."""
    writer = span.param_of_type("ResponseWriter") if top else None
    gin_or_echo = span.param_of_type("gin.Context", "echo.Context") if top else None
    request = span.param_of_type("http.Request")
    calls = _calls_in(ctx, span)
    for call in calls:
        operand, name, _ = call_parts(call)
        args = arguments(call)
        # --- I/O and deadlines (also in helpers)
        io_kind = classify_io(ctx, operand, name, args)
        if io_kind is not None:
            handler.io_calls.append(_io_call(ctx, span, io_kind, call))
            continue
        if ctx.is_pkg(operand, "context") and name in ("WithTimeout", "WithDeadline"):
            if name == "WithDeadline":
                handler.deadlines.append(Deadline(GoValue.unknown(text(call)), ctx.loc(call)))
            else:
                handler.deadlines.append(_deadline(ctx, args, call))
            continue
        if name in ("Lock", "RLock") and not args and operand:
            if _shared(ctx, span, operand, call):
                handler.sync.append(SyncUse("lock" if name == "Lock" else "rlock", operand, ctx.loc(call)))
            continue
        if not top:
            if name and (not operand or operand == span.receiver):
                handler.calls.append(f"{operand}.{name}" if operand else name)
            continue
        # --- the response (handler body only)
        if name == "Flush" and not args:
            handler.flushes.append(ctx.loc(call))
        elif name == "Stream" and gin_or_echo and operand == gin_or_echo:
            handler.flushes.append(ctx.loc(call))  # gin's Context.Stream flushes after every step
            handler.writes.append(ctx.loc(call))
            handler.write_loop = handler.write_loop or ctx.loc(call)
            handler.loop_exits_on_context = True  # and stops when the client is gone
            handler.uses_request_context = True
        elif name == "SetWriteDeadline" and args:
            handler.write_deadline = handler.write_deadline or ctx.loc(call)
        elif (name in ("Set", "Add") and operand.endswith("Header()") and len(args) == 2) or (
            name == "Header" and gin_or_echo and operand == gin_or_echo and len(args) == 2
        ):
            _header(ctx, handler, args, call)
        elif name == "SSEvent":
            handler.event_stream = handler.event_stream or ctx.loc(call)
            # gin-contrib/sse Event.WriteContentType sets Cache-Control: no-cache when absent
            handler.headers.setdefault("Cache-Control", ("no-cache", ctx.loc(call)))
            _write(ctx, span, handler, call)
        elif (name in RESPONSE_METHODS and _is_response_target(operand, writer or gin_or_echo)) or (
            name in WRITE_FUNCS and args and _is_response_target(text(args[0]), writer)
        ):
            _write(ctx, span, handler, call)
        elif name == "Context" and not args and (operand == request or operand.endswith("Request")):
            handler.uses_request_context = True
        elif (
            name in ("Done", "Err")
            and not args
            and ("ctx" in operand.lower() or "Context()" in operand or operand == gin_or_echo)
        ):
            handler.uses_request_context = handler.uses_request_context or "Context()" in operand
            if ctx.in_loop(call, span) is not None:
                handler.loop_exits_on_context = True
        elif name == "CloseNotify":
            handler.uses_request_context = True
            if ctx.in_loop(call, span) is not None:
                handler.loop_exits_on_context = True
        elif ctx.is_pkg(operand, "time") and name in ("NewTicker", "Tick", "After") and args:
            interval = values.go_value(ctx, args[0], duration=True)
            if ctx.in_loop(call, span) is not None or name != "After":
                current = handler.heartbeat
                if current is None or (
                    interval.seconds is not None and (current.seconds or 0) > interval.seconds
                ):
                    handler.heartbeat = interval
        elif name and (not operand or operand == span.receiver):
            handler.calls.append(f"{operand}.{name}" if operand else name)
    if top:
        _channels(ctx, span, handler)
        for lit in _in_range(ctx, "literal", span):
            typ = lit.child_by_field_name("type")
            if typ is None or text(typ.child_by_field_name("name")) != "Client":
                continue
            for name, node in keyed_fields(lit):
                if name == "Timeout":
                    timeout = values.go_value(ctx, node, duration=True)
                    handler.deadlines.append(Deadline(timeout, ctx.loc(node), kind="client"))
    if depth < FOLLOW_DEPTH:
        _follow(ctx, span, handler, depth)


def _follow(ctx: FileContext, span: FuncSpan, handler: Handler, depth: int) -> None:
    """Helpers of the same package that the handler calls: their I/O, deadlines and locks."""
    seen = {span.short}
    callees = list(dict.fromkeys(handler.calls))
    for callee in callees:
        if "." in callee:
            recv, method = callee.split(".", 1)
            target = _method(ctx, span.receiver_type, method) if recv == span.receiver else None
        else:
            target = ctx.package.funcs.get(callee)
        if target is None or target.short in seen or target.kind == "closure":
            continue
        seen.add(target.short)
        file = next((f for f in ctx.package.files if f.path == target_path(ctx, target)), ctx)
        collect(file, target, handler, top=False, depth=depth + 1)


def target_path(ctx: FileContext, span: FuncSpan) -> str:
    for f in ctx.package.files:
        if any(s is span for s in f.funcs):
            return f.path
    return ctx.path


def _method(ctx: FileContext, receiver_type: str, method: str) -> FuncSpan | None:
    if receiver_type:
        found = ctx.package.funcs.get(f"{receiver_type}.{method}")
        if found is not None:
            return found
    return next((s for k, s in ctx.package.funcs.items() if k.endswith("." + method)), None)


def _header(ctx: FileContext, handler: Handler, args: list[Node], call: Node) -> None:
    key_raw = text(args[0])
    key = values.string_value(ctx, args[0])
    if key is None and key_raw.endswith("HeaderContentType"):
        key = "Content-Type"
    if key is None and key_raw.endswith("HeaderCacheControl"):
        key = "Cache-Control"
    if key is None:
        return
    value = values.string_value(ctx, args[1]) or text(args[1])
    canon = canonical_header(key)
    handler.headers[canon] = (value, ctx.loc(call))
    if canon == "Content-Type" and "text/event-stream" in value:
        handler.event_stream = handler.event_stream or ctx.loc(call)
    if canon == "Connection" and value.lower() == "close":
        handler.connection_close = ctx.loc(call)


def _write(ctx: FileContext, span: FuncSpan, handler: Handler, call: Node) -> None:
    loc = ctx.loc(call)
    handler.writes.append(loc)
    loop = ctx.in_loop(call, span)
    if loop is not None and handler.write_loop is None:
        handler.write_loop = ctx.loc(loop)
    if _write_checked(call):
        handler.checks_write_errors = True
    else:
        handler.unchecked_writes.append(loc)


def _channels(ctx: FileContext, span: FuncSpan, handler: Handler) -> None:
    for send in _in_range(ctx, "send", span):
        if ctx.func_at(send) is not span:
            continue
        channel = text(send.child_by_field_name("channel"))
        if _shared(ctx, span, channel, send):
            handler.sync.append(SyncUse("chan-send", channel, ctx.loc(send)))
    for recv in _in_range(ctx, "recv", span):
        if ctx.func_at(recv) is not span:
            continue
        channel = text(recv.child_by_field_name("operand"))
        if _shared(ctx, span, channel, recv):
            handler.sync.append(SyncUse("chan-recv", channel, ctx.loc(recv)))


def build_handler(ctx: FileContext, span: FuncSpan, style: str) -> Handler:
    handler = Handler(
        name=span.name,
        location=ctx.loc(span.node),
        package=ctx.package.name,
        style=style,  # type: ignore[arg-type]
        end_line=span.node.end_point[0] + 1,
    )
    collect(ctx, span, handler, top=True)
    return handler


def find_handlers(ctx: FileContext, program: GoProgram) -> dict[int, Handler]:
    """Every handler-shaped function of the file, by the id of its node."""
    found: dict[int, Handler] = {}
    for span in ctx.funcs:
        style = handler_style(ctx, span)
        if style is None:
            continue
        handler = build_handler(ctx, span, style)
        program.handlers[handler_key(ctx, handler.name)] = handler
        found[span.node.id] = handler
    return found


def handler_key(ctx: FileContext, name: str) -> str:
    return evidence_handler_key(ctx.package.directory, name)
