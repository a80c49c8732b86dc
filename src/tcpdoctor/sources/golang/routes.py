"""Handler registrations and the handler behind each one.

Routers: the standard ``http.ServeMux`` (and ``http.Handle``/``HandleFunc`` on
DefaultServeMux, Go 1.22 patterns ``"GET /healthz"``, host patterns), gorilla/mux
(``.Methods("GET")``), chi (``r.Get``, ``r.Method``, ``r.Route`` prefixes), gin and
echo (``r.GET``, ``Group("/api")`` prefixes). The handler argument is resolved to
a function, method or closure of the package: a closure, a named function, a
method value (``s.healthz``), ``http.HandlerFunc(f)``, a handler factory
(``s.handleHealth()`` returning a closure), ``&healthHandler{}`` (its ServeHTTP),
or the first argument of a middleware (``logging(h)``).
"""

from __future__ import annotations

from tree_sitter import Node

from tcpdoctor.evidence.golang import GoProgram, HandlerRegistration, RouterKind
from tcpdoctor.sources.golang import parse, values
from tcpdoctor.sources.golang.context import FileContext, FuncSpan
from tcpdoctor.sources.golang.handlers import handler_key, handler_style
from tcpdoctor.sources.golang.parse import arguments, call_parts, text

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE")
CHI_METHODS = {m.capitalize(): m for m in HTTP_METHODS}
UPPER_METHODS = {*HTTP_METHODS, "Any"}
MAX_DEPTH = 6


def _router_kind(ctx: FileContext, operand: str) -> RouterKind:
    if ctx.is_pkg(operand, "net/http"):
        return "default"
    if ctx.imports_like("gorilla/mux"):
        return "gorilla"
    if ctx.imports_like("go-chi/chi"):
        return "chi"
    if ctx.imports_like("gin-gonic/gin"):
        return "gin"
    if ctx.imports_like("labstack/echo"):
        return "echo"
    return "servemux"


def split_pattern(pattern: str) -> tuple[str | None, str | None, str]:
    """Go 1.22 ServeMux pattern "[METHOD ][HOST]/[PATH]" -> (method, host, path)."""
    method: str | None = None
    rest = pattern.strip()
    if " " in rest or "\t" in rest:
        head, tail = rest.split(None, 1)
        method, rest = head.upper(), tail.strip()
    host: str | None = None
    if not rest.startswith("/") and "/" in rest:
        host, rest = rest.split("/", 1)
        rest = "/" + rest
    return method, host, rest


def _gorilla_methods(ctx: FileContext, call: Node) -> str | None:
    parent = call.parent
    while parent is not None and parent.type == "selector_expression":
        chained = parent.parent
        if chained is None or chained.type != "call_expression":
            return None
        if text(parent.child_by_field_name("field")) == "Methods":
            found = [values.string_value(ctx, a) for a in arguments(chained)]
            methods = [m.upper() for m in found if m]
            return ",".join(methods) or None
        parent = chained.parent
    return None


def _group_prefix(ctx: FileContext, group: Node, depth: int) -> str:
    """The prefix of a route group value: r.Group("/api"), r.PathPrefix("/api").Subrouter()."""
    operand, name, operand_node = call_parts(group)
    args = arguments(group)
    if name == "Subrouter" and operand_node is not None and operand_node.type == "call_expression":
        return _group_prefix(ctx, operand_node, depth + 1)
    if name in ("Group", "PathPrefix") and args:
        own = values.string_value(ctx, args[0]) or ""
        return _prefix(ctx, group, operand, depth + 1) + own
    return ""


def _prefix(ctx: FileContext, call: Node, operand: str, depth: int = 0) -> str:
    """Route-group prefixes: gin/echo `g := r.Group("/api")`, gorilla `s := r.PathPrefix("/api").Subrouter()`,
    chi `r.Route("/api", func(r chi.Router) {...})`."""
    if depth > MAX_DEPTH:
        return ""
    if operand and operand.isidentifier():
        found = ctx.lookup(operand, call)
        if found is not None and found[0] is not None and found[0].type == "call_expression":
            group = _group_prefix(found[1], found[0], depth + 1)
            if group:
                return group
    span = ctx.func_at(call)
    if span is not None and span.kind == "closure":
        lit = span.node
        outer = lit.parent.parent if lit.parent is not None else None
        if outer is not None and outer.type == "call_expression":
            o_operand, o_name, _ = call_parts(outer)
            o_args = arguments(outer)
            if o_name in ("Route", "Group") and len(o_args) == 2 and o_args[1].id == lit.id:
                own = values.string_value(ctx, o_args[0]) or ""
                return _prefix(ctx, outer, o_operand, depth + 1) + own
    return ""


def find_registrations(ctx: FileContext, program: GoProgram) -> list[tuple[HandlerRegistration, Node]]:
    out: list[tuple[HandlerRegistration, Node]] = []
    for call in ctx.caps.get("call", []):
        operand, name, _ = call_parts(call)
        if not operand or not name:
            continue
        args = arguments(call)
        method: str | None = None
        pattern_node: Node | None = None
        handler_node: Node | None = None
        router = _router_kind(ctx, operand)
        if name in ("HandleFunc", "Handle") and len(args) == 2:
            pattern_node, handler_node = args
            if router == "gorilla":
                method = _gorilla_methods(ctx, call)
            elif router in ("gin", "echo"):
                router = "servemux"
        elif name in ("Handle", "Method", "MethodFunc") and len(args) == 3 and router in ("chi", "gin"):
            method = (values.string_value(ctx, args[0]) or "").upper() or None
            pattern_node, handler_node = args[1], args[2]
        elif name in CHI_METHODS and len(args) == 2 and router == "chi":
            method, (pattern_node, handler_node) = CHI_METHODS[name], args
        elif name in UPPER_METHODS and len(args) >= 2 and router in ("gin", "echo"):
            method = None if name == "Any" else name
            pattern_node = args[0]
            handler_node = args[-1] if router == "gin" else args[1]
        else:
            continue
        pattern = values.string_value(ctx, pattern_node)
        if pattern is None:
            continue
        p_method, host, path = split_pattern(pattern)
        if not path.startswith("/") and path != "":
            continue
        prefix = _prefix(ctx, call, operand) if router != "default" else ""
        reg = HandlerRegistration(
            router=router,
            pattern=(prefix.rstrip("/") + path) if prefix else path,
            location=ctx.loc(call),
            handler_ref=text(handler_node),
            method=p_method or method,
            mux=operand,
            host=host,
            enclosing=ctx.func_name_at(call),
            package=ctx.package.name,
        )
        target = resolve(ctx, handler_node)
        if isinstance(target, FuncSpan):
            reg.handler = handler_key(ctx, target.name)
        elif isinstance(target, str):
            reg.handler = target  # pkg.Func of another package: resolved when all packages are in
        program.registrations.append(reg)
        out.append((reg, call))
    return out


def resolve(ctx: FileContext, node: Node | None, depth: int = 0) -> FuncSpan | str | None:
    """The handler function behind a handler expression (a span here, or "pkg.Func" elsewhere)."""
    if node is None or depth > MAX_DEPTH:
        return None
    node = parse.unparen(node)
    kind = node.type
    if kind == "func_literal":
        return ctx.span_of(node)
    if kind == "identifier":
        name = text(node)
        found = ctx.lookup(name, node)
        if found is not None and found[0] is not None:
            return resolve(found[1], found[0], depth + 1)
        return ctx.package.funcs.get(name)
    if kind == "selector_expression":
        operand = text(node.child_by_field_name("operand"))
        field = text(node.child_by_field_name("field"))
        imp = ctx.pkg_of(operand)
        if imp is not None:
            return f"{imp.rsplit('/', 1)[-1]}.{field}"
        span = ctx.func_at(node)
        recv_type = span.receiver_type if span is not None and operand == span.receiver else ""
        if recv_type and f"{recv_type}.{field}" in ctx.package.funcs:
            return ctx.package.funcs[f"{recv_type}.{field}"]
        return next((s for k, s in ctx.package.funcs.items() if k.endswith("." + field)), None)
    if kind == "unary_expression":
        return resolve(ctx, node.child_by_field_name("operand"), depth + 1)
    if kind == "composite_literal":
        typ = text(node.child_by_field_name("type"))
        return ctx.package.funcs.get(f"{typ}.ServeHTTP")
    if kind == "type_conversion_expression":
        return resolve(ctx, node.child_by_field_name("operand"), depth + 1)
    if kind == "call_expression":
        return _resolve_call(ctx, node, depth)
    return None


def _resolve_call(ctx: FileContext, node: Node, depth: int) -> FuncSpan | str | None:
    _, name, _ = call_parts(node)
    args = arguments(node)
    if name == "HandlerFunc" and len(args) == 1:
        return resolve(ctx, args[0], depth + 1)
    fn = node.child_by_field_name("function")
    factory = resolve(ctx, fn, depth + 1) if fn is not None else None
    if isinstance(factory, FuncSpan):
        owner = _file_of(ctx, factory)
        if handler_style(owner, factory) is not None:
            return factory
        inner = next(
            (
                s
                for s in owner.funcs
                if s.kind == "closure"
                and factory.start <= s.start < factory.end
                and handler_style(owner, s) is not None
            ),
            None,
        )
        if inner is not None:
            return inner
    for arg in args:  # middleware(h), http.TimeoutHandler(h, d, msg), http.StripPrefix("/x", h)
        found = resolve(ctx, arg, depth + 1)
        if found is not None:
            return found
    return None


def _file_of(ctx: FileContext, span: FuncSpan) -> FileContext:
    for f in ctx.package.files:
        if f.funcs and any(s is span for s in f.funcs):
            return f
    return ctx
