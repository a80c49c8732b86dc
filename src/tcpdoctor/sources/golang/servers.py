"""http.Server values, listen calls, graceful shutdown and signal handling.

Follows the server through its variable: ``srv := &http.Server{...}`` then
``srv.IdleTimeout = d``, ``srv.SetKeepAlivesEnabled(false)``, ``srv.ListenAndServe()``,
``srv.Shutdown(ctx)`` where ``ctx`` comes from ``context.WithTimeout(..., d)``.
A server kept in a struct field (``s.http = &http.Server{}``) is followed by the
field's text anywhere in the package.
"""

from __future__ import annotations

from tree_sitter import Node

from tcpdoctor.evidence.golang import (
    GoProgram,
    GoValue,
    HttpServer,
    ListenCall,
    ShutdownCall,
    SignalHandling,
)
from tcpdoctor.sources.golang import parse, values
from tcpdoctor.sources.golang.context import FileContext, field_assignments
from tcpdoctor.sources.golang.parse import arguments, call_parts, text
from tcpdoctor.sources.golang.reqctx import trace_context

HTTP = "net/http"
SERVER_FIELDS = {
    "ReadTimeout": ("read_timeout", True),
    "ReadHeaderTimeout": ("read_header_timeout", True),
    "WriteTimeout": ("write_timeout", True),
    "IdleTimeout": ("idle_timeout", True),
    "MaxHeaderBytes": ("max_header_bytes", False),
    "Addr": ("addr", False),
}
LISTEN_FUNCS = {"ListenAndServe", "ListenAndServeTLS", "Serve", "ServeTLS"}
GIN_MAKERS = {"Default", "New"}
GIN_DEFAULT_ADDR = ":8080"  # gin resolveAddress(): $PORT, else :8080


def _set_field(ctx: FileContext, server: HttpServer, field: str, value_node: Node | None) -> None:
    spec = SERVER_FIELDS.get(field)
    if spec is None:
        if field == "Handler" and value_node is not None:
            server.handler_ref = text(value_node)
        return
    attr, is_duration = spec
    setattr(server, attr, values.go_value(ctx, value_node, duration=is_duration))
    if attr == "addr":
        server.port = values.port_of(server.addr)


def holder_name(node: Node) -> str:
    """The variable or field a value is stored in: `srv` in `srv := &http.Server{}`."""
    cur = node
    parent = cur.parent
    while parent is not None and parent.type in ("unary_expression", "parenthesized_expression"):
        cur, parent = parent, parent.parent
    if parent is None:
        return ""
    if parent.type == "expression_list":
        stmt = parent.parent
        if stmt is not None and stmt.type in ("short_var_declaration", "assignment_statement"):
            left = stmt.child_by_field_name("left")
            right = stmt.child_by_field_name("right")
            if left is not None and right is not None and right.id == parent.id:
                idx = next((i for i, c in enumerate(parent.named_children) if c.id == cur.id), 0)
                lhs = left.named_children
                return text(lhs[idx]) if idx < len(lhs) else ""
        if stmt is not None and stmt.type == "var_spec":
            names = stmt.children_by_field_name("name")
            return text(names[0]) if names else ""
        if stmt is not None and stmt.type == "return_statement":
            return "return"
    if parent.type == "literal_element":
        keyed = parent.parent
        if keyed is not None and keyed.type == "keyed_element" and keyed.named_children:
            key = keyed.named_children[0]
            if key.id != parent.id:
                return "." + text(key)  # a field of an enclosing struct literal
    return ""


def _is_server_type(ctx: FileContext, type_node: Node | None) -> bool:
    if type_node is None or type_node.type != "qualified_type":
        return False
    pkg = text(type_node.child_by_field_name("package"))
    return ctx.is_pkg(pkg, HTTP) and text(type_node.child_by_field_name("name")) == "Server"


def _same_holder(server: HttpServer, operand: str, ctx: FileContext, at: Node) -> bool:
    if not server.name or not operand:
        return False
    if server.name == "return":
        return _returned_by(server, operand, ctx, at)
    if server.name.startswith("."):
        return operand.endswith(server.name)
    if operand != server.name:
        return False
    if "." in operand:  # a field: anywhere in the package
        return True
    span = ctx.func_at(at)
    return span is not None and server.func in (span.name, span.top().name)


def _returned_by(server: HttpServer, operand: str, ctx: FileContext, at: Node) -> bool:
    """`srv := newServer(cfg)` / `newServer(cfg).ListenAndServe()` where newServer returns the literal."""
    maker = server.func.rsplit(".", 1)[-1]
    if operand.endswith(")"):
        callee = operand.split("(", 1)[0]
        return callee.rsplit(".", 1)[-1] == maker
    if not operand.isidentifier():
        return False
    found = ctx.lookup(operand, at)
    if found is None or found[0] is None or found[0].type != "call_expression":
        return False
    return call_parts(found[0])[1] == maker


def find_servers(ctx: FileContext, program: GoProgram) -> list[HttpServer]:
    found: list[HttpServer] = []
    for lit in ctx.caps.get("literal", []):
        if not _is_server_type(ctx, lit.child_by_field_name("type")):
            continue
        span = ctx.func_at(lit)
        server = HttpServer(
            name=holder_name(lit),
            location=ctx.loc(lit),
            func=span.top().name if span else f"{ctx.package.name}.init",
            package=ctx.package.name,
        )
        for name, value_node in parse.keyed_fields(lit):
            _set_field(ctx, server, name, value_node)
        found.append(server)
    for spec in ctx.caps.get("typed_var", []):  # var srv http.Server
        if (
            _is_server_type(ctx, spec.child_by_field_name("type"))
            and spec.child_by_field_name("value") is None
        ):
            span = ctx.func_at(spec)
            names = spec.children_by_field_name("name")
            found.append(
                HttpServer(
                    name=text(names[0]) if names else "",
                    location=ctx.loc(spec),
                    func=span.top().name if span else f"{ctx.package.name}.init",
                    package=ctx.package.name,
                )
            )
    found.extend(_echo_servers(ctx))
    program.servers.extend(found)
    return found


def apply_assignments(ctx: FileContext, servers: list[HttpServer]) -> None:
    """`srv.IdleTimeout = 2 * time.Minute` after the literal."""
    if not servers:
        return
    for stmt, operand, field, value in field_assignments(ctx):
        if field not in SERVER_FIELDS and field != "Handler":
            continue
        for server in servers:
            if _same_holder(server, operand, ctx, stmt):
                _set_field(ctx, server, field, value)


def _server_for(servers: list[HttpServer], operand: str, ctx: FileContext, at: Node) -> HttpServer | None:
    return next((s for s in servers if _same_holder(s, operand, ctx, at)), None)


def _shutdown_timeout(ctx: FileContext, ctx_arg: Node | None) -> GoValue:
    """The deadline of the context given to Shutdown: context.WithTimeout(parent, d) -> d, none
    (unset) for context.Background(), unknown for anything else."""
    if ctx_arg is None:
        return GoValue.unknown()
    origin, deadline = trace_context(ctx, ctx_arg)
    if origin == "background":
        return GoValue.unset()
    if deadline is not None:
        return deadline
    return GoValue.unknown(text(ctx_arg), ctx.loc(ctx_arg))


def scan_calls(ctx: FileContext, servers: list[HttpServer], program: GoProgram) -> None:
    """Listen calls, SetKeepAlivesEnabled, Shutdown and signal.Notify."""
    http_alias = ctx.alias_of(HTTP)
    for call in ctx.caps.get("call", []):
        operand, name, _ = call_parts(call)
        if not name:
            continue
        if name in LISTEN_FUNCS:
            _listen_call(ctx, call, operand, name, http_alias, servers, program)
        elif (
            name in ("Run", "RunTLS")
            and operand
            and _made_by(ctx, call, operand, "gin-gonic/gin", GIN_MAKERS)
        ):
            _gin_run(ctx, call, operand, name, program)
        elif (
            name in ("Start", "StartTLS")
            and operand
            and _made_by(ctx, call, operand, "labstack/echo", {"New"})
        ):
            server = _server_for(servers, f"{operand}.Server", ctx, call)
            if server is not None:
                server.serve_calls.append(ctx.loc(call))
                args = arguments(call)
                if args and not server.addr.is_set:
                    server.addr = values.go_value(ctx, args[0])
                    server.port = values.port_of(server.addr)
                program.listen_calls.append(
                    ListenCall(
                        func="ListenAndServe",
                        location=ctx.loc(call),
                        enclosing=ctx.func_name_at(call),
                        package=ctx.package.name,
                        package_level=False,
                        addr=server.addr,
                        port=server.port,
                        handler_ref=operand,
                        server=server.name,
                        framework=f"echo.Echo.{name}",
                    )
                )
        elif name == "SetKeepAlivesEnabled":
            args = arguments(call)
            server = _server_for(servers, operand, ctx, call)
            if server is not None and args and text(args[0]) == "false":
                server.keep_alives_disabled = ctx.loc(call)
                server.keep_alives_disabled_func = ctx.func_name_at(call)
        elif name == "Shutdown" and operand:
            args = arguments(call)
            server = _server_for(servers, operand, ctx, call) or _server_for(
                servers, f"{operand}.Server", ctx, call
            )
            if (
                server is None
                and not any(_looks_server(operand, s.name) for s in servers)
                and not ("srv" in operand.lower() or "server" in operand.lower())
            ):
                continue
            shutdown = ShutdownCall(
                location=ctx.loc(call),
                func=ctx.func_name_at(call),
                server=operand,
                timeout=_shutdown_timeout(ctx, args[0] if args else None),
            )
            program.shutdowns.append(shutdown)
            if server is not None:
                server.shutdown_calls.append(shutdown)
        elif name in ("Notify", "NotifyContext") and ctx.is_pkg(operand, "os/signal"):
            args = arguments(call)
            program.signals.append(
                SignalHandling(
                    location=ctx.loc(call),
                    func=ctx.func_name_at(call),
                    signals=[_signal_name(ctx, a) for a in args[1:]] or ["all"],
                )
            )


def _looks_server(operand: str, name: str) -> bool:
    return bool(name) and operand.endswith(name.lstrip("."))


def _signal_name(ctx: FileContext, node: Node) -> str:
    raw = text(node)
    if "." in raw:
        pkg, name = raw.split(".", 1)
        if ctx.pkg_of(pkg) in ("syscall", "golang.org/x/sys/unix"):
            return f"syscall.{name}"
        if ctx.pkg_of(pkg) == "os":
            return f"os.{name}"
    return raw


def _listen_call(
    ctx: FileContext,
    call: Node,
    operand: str,
    name: str,
    http_alias: str | None,
    servers: list[HttpServer],
    program: GoProgram,
) -> None:
    args = arguments(call)
    package_level = bool(http_alias) and operand == http_alias
    listen = ListenCall(
        func=name,
        location=ctx.loc(call),
        enclosing=ctx.func_name_at(call),
        package=ctx.package.name,
        package_level=package_level,
    )
    if package_level:
        if name.startswith("ListenAndServe") and args:
            listen.addr = values.go_value(ctx, args[0])
            listen.port = values.port_of(listen.addr)
        elif name.startswith("Serve") and args:
            listen.addr = _listener_addr(ctx, args[0])
            listen.port = values.port_of(listen.addr)
        handler_idx = 1 if name in ("ListenAndServe", "Serve", "ServeTLS") else 3
        if len(args) > handler_idx:
            listen.handler_ref = text(args[handler_idx])
        program.listen_calls.append(listen)
        return
    server = _server_for(servers, operand, ctx, call)
    if server is None and not operand:
        return
    if server is None and not ("srv" in operand.lower() or "server" in operand.lower()):
        return  # gin's r.Run, grpc's s.Serve(l) ... are not net/http servers we know
    listen.server = operand
    if server is not None:
        server.serve_calls.append(listen.location)
        if name.startswith("Serve") and args and not server.addr.is_set:
            addr = _listener_addr(ctx, args[0])
            if addr.is_set:
                server.addr = addr
                server.port = values.port_of(addr)
        listen.addr, listen.port = server.addr, server.port
    program.listen_calls.append(listen)


def _made_by(ctx: FileContext, at: Node, operand: str, import_fragment: str, makers: set[str]) -> bool:
    """Is ``operand`` a value built by ``pkg.Default()`` / ``pkg.New()`` of the given framework?"""
    if not operand.isidentifier() or not ctx.imports_like(import_fragment):
        return False
    found = ctx.lookup(operand, at)
    if found is None or found[0] is None or found[0].type != "call_expression":
        return False
    pkg, name, _ = call_parts(found[0])
    return name in makers and import_fragment in (found[1].pkg_of(pkg) or "")


def _gin_run(ctx: FileContext, call: Node, operand: str, name: str, program: GoProgram) -> None:
    """gin's Engine.Run(addr) is http.ListenAndServe(addr, engine): the package defaults, no timeouts."""
    args = arguments(call)
    if args:
        addr = values.go_value(ctx, args[0])
    else:
        addr = GoValue("set", GIN_DEFAULT_ADDR, ctx.loc(call), f"{operand}.{name}()", "env-default")
    program.listen_calls.append(
        ListenCall(
            func="ListenAndServeTLS" if name == "RunTLS" else "ListenAndServe",
            location=ctx.loc(call),
            enclosing=ctx.func_name_at(call),
            package=ctx.package.name,
            package_level=True,
            addr=addr,
            port=values.port_of(addr),
            handler_ref=operand,
            framework=f"gin.Engine.{name}",
        )
    )


def _echo_servers(ctx: FileContext) -> list[HttpServer]:
    """echo.New() builds `e.Server = new(http.Server)`: a zero server until its fields are set."""
    found: list[HttpServer] = []
    for call in ctx.caps.get("call", []):
        operand, name, _ = call_parts(call)
        if (
            name in ("Start", "StartTLS")
            and operand
            and _made_by(ctx, call, operand, "labstack/echo", {"New"})
        ):
            if any(s.name == f"{operand}.Server" for s in found):
                continue
            span = ctx.func_at(call)
            found.append(
                HttpServer(
                    name=f"{operand}.Server",
                    location=ctx.loc(call),
                    func=span.top().name if span else f"{ctx.package.name}.init",
                    package=ctx.package.name,
                    handler_ref=operand,
                )
            )
    return found


def _listener_addr(ctx: FileContext, node: Node) -> GoValue:
    """`l, _ := net.Listen("tcp", ":8080")` -> ":8080"."""
    node = parse.unparen(node)
    if node.type == "identifier":
        found = ctx.lookup(text(node), node)
        if found is None or found[0] is None:
            return GoValue.unknown(text(node), ctx.loc(node))
        node = found[0]
        ctx = found[1]
    if node.type == "call_expression":
        _, name, _ = call_parts(node)
        args = arguments(node)
        if name in ("Listen", "ListenTCP") and len(args) >= 2:
            return values.go_value(ctx, args[1])
    return GoValue.unknown(text(node), ctx.loc(node))
