"""Outgoing HTTP and gRPC: transports, clients, dialers, requests, response bodies, keepalive pings.

What one package gives (``extract_package(contexts, program)``, called by extract.py):

- ``http.Transport`` literals (``&http.Transport{...}``, ``http.DefaultTransport.(*http.Transport).Clone()``)
  with the fields assigned after construction (``t.IdleConnTimeout = d``) and the
  ``net.Dialer`` inside ``DialContext: (&net.Dialer{...}).DialContext``;
- ``http.Client`` literals and the transport they use (a literal, or a variable / field
  holding one); ``in_handler`` / ``in_loop`` say a value is built per request;
- requests: ``http.Get/Post/Head/PostForm`` (http.DefaultClient), ``c.Do/Get/Post/Head/PostForm``
  on ``http.DefaultClient`` or a known client, with the method, the URL when it evaluates,
  and what bounds them (a client Timeout, ``http.NewRequestWithContext`` and whether the
  context carries a deadline made in the same function);
- response bodies: ``resp, err := ...`` followed (or not) by ``resp.Body.Close()`` and a read
  to the end (``io.Copy(io.Discard, resp.Body)``, ``io.ReadAll``, a decoder);
- ``golang.org/x/net/http2.Transport`` pings (ReadIdleTimeout, PingTimeout),
  gRPC ``keepalive.ClientParameters`` / ``ServerParameters`` / ``EnforcementPolicy`` and
  ``grpc.Dial/DialContext/NewClient`` with or without ``grpc.WithKeepaliveParams``;
- URL literals and Service-like strings (``"http://orders:8080"``, a flag default
  ``"ingest.markets.svc:9090"``, ``"dns:///api.prod.svc:443"``): where the service's clients may go
  (cross-layer matching).
"""

from __future__ import annotations

import re

from tree_sitter import Node

from tcpdoctor.evidence.golang import (
    ClientRequest,
    Dialer,
    GoProgram,
    GoValue,
    GrpcDial,
    HttpClient,
    HttpTransport,
    KeepaliveSettings,
    ResponseBodyUse,
)
from tcpdoctor.sources.golang import parse, values
from tcpdoctor.sources.golang.context import FileContext, FuncSpan, field_assignments
from tcpdoctor.sources.golang.handlers import handler_style
from tcpdoctor.sources.golang.parse import arguments, call_parts, keyed_fields, text
from tcpdoctor.sources.golang.reqctx import later_with_context, request_of, trace_context
from tcpdoctor.sources.golang.servers import holder_name

HTTP = "net/http"
HTTP2 = "golang.org/x/net/http2"
GRPC = "google.golang.org/grpc"
GRPC_KEEPALIVE = "google.golang.org/grpc/keepalive"

TRANSPORT_FIELDS: dict[str, tuple[str, bool]] = {
    "IdleConnTimeout": ("idle_conn_timeout", True),
    "MaxIdleConns": ("max_idle_conns", False),
    "MaxIdleConnsPerHost": ("max_idle_conns_per_host", False),
    "MaxConnsPerHost": ("max_conns_per_host", False),
    "DisableKeepAlives": ("disable_keep_alives", False),
    "ForceAttemptHTTP2": ("force_attempt_http2", False),
    "TLSHandshakeTimeout": ("tls_handshake_timeout", True),
    "ResponseHeaderTimeout": ("response_header_timeout", True),
}
# http.DefaultTransport (net/http/transport.go): what a Clone() starts from
DEFAULT_TRANSPORT: dict[str, float | int | bool] = {
    "idle_conn_timeout": 90.0,
    "max_idle_conns": 100,
    "force_attempt_http2": True,
    "tls_handshake_timeout": 10.0,
}
KEEPALIVE_FIELDS: dict[str, str] = {
    "ReadIdleTimeout": "ping_interval",  # x/net/http2.Transport
    "SendPingTimeout": "ping_interval",  # net/http.HTTP2Config (Go 1.24+)
    "PingTimeout": "ping_timeout",
    "Time": "ping_interval",  # grpc keepalive.ClientParameters / ServerParameters
    "Timeout": "ping_timeout",
    "MaxConnectionAge": "max_connection_age",
    "MaxConnectionIdle": "max_connection_idle",
}
KEEPALIVE_TYPES = {
    (HTTP2, "Transport"): "http2-transport",
    (HTTP, "HTTP2Config"): "http2-transport",
    (GRPC_KEEPALIVE, "ClientParameters"): "grpc-client",
    (GRPC_KEEPALIVE, "ServerParameters"): "grpc-server",
    (GRPC_KEEPALIVE, "EnforcementPolicy"): "grpc-enforcement",
}
REQUEST_FUNCS = frozenset({"Get", "Post", "Head", "PostForm"})
CLIENT_METHODS = frozenset({"Do", *REQUEST_FUNCS})
GRPC_DIALS = frozenset({"Dial", "DialContext", "NewClient"})
METHOD_OF = {"Get": "GET", "Head": "HEAD", "Post": "POST", "PostForm": "POST"}
# URL literals and bare Service names with a port (flag defaults, grpc.Dial targets) of the packages
# this extractor reads (extract.py collects the URL literals of the other packages from raw bytes)
URL_LIKE = re.compile(
    r"^(?:(?:https?|h2c|grpc|dns|xds)://[^\s]+"
    r"|[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9-]+)*\.svc(?:\.cluster\.local)?(?::\d+)?(?:/\S*)?)$"
)


SERVICE_LIKE_BYTES = re.compile(rb'"(?:(?:https?|h2c|grpc|dns|xds)://|[a-z0-9][a-z0-9.-]*\.svc\b)')


def extract_package(contexts: list[FileContext], program: GoProgram) -> None:
    """Add the client-side evidence of one package's files to ``program``.

    Values first (transports, clients and their later assignments) in every file, then
    the calls, so that a client declared in one file is known where another file uses it.
    """
    made: list[tuple[FileContext, list[HttpTransport], list[HttpClient]]] = []
    pings: list[tuple[str, KeepaliveSettings]] = []
    for ctx in contexts:
        if ctx.imports_like(HTTP) or ctx.imports_like(GRPC) or ctx.imports_like(HTTP2):
            transports = _transports(ctx, program, pings)
            made.append((ctx, transports, _clients(ctx, program, transports)))
    transports = [t for _, ts, _ in made for t in ts]
    clients = [c for _, _, cs in made for c in cs]
    for ctx, _, _ in made:
        _assignments(ctx, transports, clients, pings)
    for ctx, _, _ in made:
        _calls(ctx, program)
    for ctx in contexts:
        _url_strings(ctx, program)
        _sleeps_before_shutdown(ctx, program)


# --- values built in a handler or a loop ------------------------------------------------------------


SENDS_REQUEST = re.compile(r"\.(?:Do|Get|Post|Head|PostForm|RoundTrip)\(")


def _per_request(ctx: FileContext, node: Node) -> tuple[bool, bool, str]:
    """(built once per incoming request, once per iteration of a loop that sends requests, function).

    Inside a ``once.Do(func() {...})`` nothing is per request. A loop counts only when its body also
    sends requests: a loop that builds one transport per configured upstream at start-up is fine.
    """
    span = ctx.func_at(node)
    name = span.top().name if span else f"{ctx.package.name}.init"
    if _inside_once(node):
        return False, False, name
    in_handler = False
    cur: FuncSpan | None = span
    while cur is not None:
        if handler_style(ctx, cur) is not None:
            in_handler = True
            break
        cur = cur.parent
    loop = ctx.in_loop(node, within=span) if span is not None else None
    in_loop = loop is not None and SENDS_REQUEST.search(text(loop)) is not None
    return in_handler, in_loop, name


def _inside_once(node: Node) -> bool:
    cur = node.parent
    while cur is not None:
        if cur.type == "func_literal":
            call = cur.parent.parent if cur.parent is not None else None  # argument_list -> call
            if call is not None and call.type == "call_expression":
                operand, name, _ = call_parts(call)
                if name == "Do" and "once" in operand.lower():
                    return True
        cur = cur.parent
    return False


def _qualified(ctx: FileContext, type_node: Node | None) -> tuple[str, str] | None:
    """(import path, type name) of a qualified type such as http.Transport."""
    if type_node is None or type_node.type != "qualified_type":
        return None
    pkg = ctx.pkg_of(text(type_node.child_by_field_name("package")))
    return (pkg, text(type_node.child_by_field_name("name"))) if pkg else None


# --- transports and dialers ---------------------------------------------------------------------------


def _set_transport_field(ctx: FileContext, transport: HttpTransport, name: str, value: Node) -> None:
    spec = TRANSPORT_FIELDS.get(name)
    if spec is not None:
        attr, is_duration = spec
        setattr(transport, attr, values.go_value(ctx, value, duration=is_duration))
    elif name in ("DialContext", "Dial", "DialTLSContext", "DialTLS"):
        transport.custom_dial = True
        dialer = _dialer_in(ctx, value)
        if dialer is not None:
            transport.dialer = dialer
    elif name == "TLSClientConfig":
        transport.tls_config = text(value) != "nil"


def _dialer_in(ctx: FileContext, node: Node) -> Dialer | None:
    """The net.Dialer literal of ``(&net.Dialer{...}).DialContext`` (or through a variable)."""
    node = parse.unparen(node)
    if node.type == "selector_expression":
        node = parse.unparen(node.child_by_field_name("operand") or node)
    if node.type == "unary_expression":
        node = parse.unparen(node.child_by_field_name("operand") or node)
    if node.type == "identifier":
        found = ctx.lookup(text(node), node)
        if found is None or found[0] is None:
            return None
        return _dialer_in(found[1], found[0])
    if node.type == "composite_literal" and _qualified(ctx, node.child_by_field_name("type")) == (
        "net",
        "Dialer",
    ):
        return _dialer(ctx, node)
    return None


def _dialer(ctx: FileContext, lit: Node) -> Dialer:
    dialer = Dialer(location=ctx.loc(lit))
    for name, value in keyed_fields(lit):
        if name == "Timeout":
            dialer.timeout = values.go_value(ctx, value, duration=True)
        elif name == "KeepAlive":
            dialer.keep_alive = values.go_value(ctx, value, duration=True)
    return dialer


def _new_transport(ctx: FileContext, node: Node, *, is_default: bool = False) -> HttpTransport:
    in_handler, in_loop, func = _per_request(ctx, node)
    transport = HttpTransport(
        name=holder_name(node),
        location=ctx.loc(node),
        func=func,
        package=ctx.package.name,
        is_default=is_default,
        in_handler=in_handler,
        in_loop=in_loop,
    )
    if is_default:
        for attr, value in DEFAULT_TRANSPORT.items():
            setattr(transport, attr, GoValue("set", value, ctx.loc(node), "http.DefaultTransport", "default"))
    return transport


def _transports(
    ctx: FileContext, program: GoProgram, pings: list[tuple[str, KeepaliveSettings]]
) -> list[HttpTransport]:
    """Transports, dialers and ping settings of one file (``pings`` gets the holders of the latter)."""
    found: list[HttpTransport] = []
    for lit in ctx.caps.get("literal", []):
        kind = _qualified(ctx, lit.child_by_field_name("type"))
        if kind == (HTTP, "Transport"):
            transport = _new_transport(ctx, lit)
            for name, value in keyed_fields(lit):
                _set_transport_field(ctx, transport, name, value)
            found.append(transport)
        elif kind == ("net", "Dialer"):
            program.dialers.append(_dialer(ctx, lit))
        elif kind in KEEPALIVE_TYPES:
            _, func = _per_request(ctx, lit)[1:]
            settings = KeepaliveSettings(
                kind=KEEPALIVE_TYPES[kind],  # type: ignore[arg-type]
                location=ctx.loc(lit),
                func=func,
                package=ctx.package.name,
            )
            for name, value in keyed_fields(lit):
                attr = KEEPALIVE_FIELDS.get(name)
                if attr is not None:
                    setattr(settings, attr, values.go_value(ctx, value, duration=True))
            program.keepalives.append(settings)
            pings.append((holder_name(lit), settings))
    for call in ctx.caps.get("call", []):
        operand, name, _ = call_parts(call)
        if name == "Clone" and "DefaultTransport" in operand:
            found.append(_new_transport(ctx, call, is_default=True))
        elif name == "ConfigureTransports" and ctx.is_pkg(
            operand, HTTP2
        ):  # t2, err := ...; t2.ReadIdleTimeout = d
            settings = KeepaliveSettings(
                kind="http2-transport",
                location=ctx.loc(call),
                func=_per_request(ctx, call)[2],
                package=ctx.package.name,
            )
            program.keepalives.append(settings)
            pings.append((holder_name(call), settings))
    program.transports.extend(found)
    return found


# --- clients ------------------------------------------------------------------------------------------


def _transport_for(
    ctx: FileContext, node: Node, transports: list[HttpTransport]
) -> tuple[str, HttpTransport | None]:
    """The transport a Client's Transport field names: a literal, or a variable/field holding one."""
    ref = text(node)
    inner = parse.unparen(node)
    if inner.type == "unary_expression":
        inner = parse.unparen(inner.child_by_field_name("operand") or inner)
    loc = ctx.loc(inner)
    for t in transports:
        if t.location == loc:
            return ref, t
    key = ref.lstrip("&")
    for t in transports:
        if t.name and (t.name == key or (t.name.startswith(".") and key.endswith(t.name))):
            return ref, t
    return ref, None


def _clients(ctx: FileContext, program: GoProgram, transports: list[HttpTransport]) -> list[HttpClient]:
    found: list[HttpClient] = []
    for lit in ctx.caps.get("literal", []):
        if _qualified(ctx, lit.child_by_field_name("type")) != (HTTP, "Client"):
            continue
        in_handler, in_loop, func = _per_request(ctx, lit)
        client = HttpClient(
            name=holder_name(lit),
            location=ctx.loc(lit),
            func=func,
            package=ctx.package.name,
            in_handler=in_handler,
            in_loop=in_loop,
        )
        for name, value in keyed_fields(lit):
            if name == "Timeout":
                client.timeout = values.go_value(ctx, value, duration=True)
            elif name == "Transport":
                client.transport_ref, client.transport = _transport_for(ctx, value, transports)
        found.append(client)
    program.clients.extend(found)
    return found


def _holds(name: str, operand: str, ctx: FileContext, at: Node, func: str) -> bool:
    """Does ``operand`` (as written at ``at``) refer to the value stored under ``name``?"""
    if not name or not operand:
        return False
    if name.startswith("."):
        return operand.endswith(name)
    if operand != name:
        return False
    if "." in operand or func == f"{ctx.package.name}.init":  # a field, or a package-level variable
        return True
    span = ctx.func_at(at)
    return span is not None and func == span.top().name


def _assignments(
    ctx: FileContext,
    transports: list[HttpTransport],
    clients: list[HttpClient],
    pings: list[tuple[str, KeepaliveSettings]],
) -> None:
    """``t.IdleConnTimeout = d`` / ``c.Timeout = d`` / ``t2.ReadIdleTimeout = d`` after construction."""
    if not transports and not clients and not pings:
        return
    for stmt, operand, field, value in field_assignments(ctx):
        if value is None:
            continue
        for t in transports:
            if _holds(t.name, operand, ctx, stmt, t.func):
                _set_transport_field(ctx, t, field, value)
        for holder, settings in pings:
            attr = KEEPALIVE_FIELDS.get(field)
            if attr is not None and _holds(holder, operand, ctx, stmt, settings.func):
                setattr(settings, attr, values.go_value(ctx, value, duration=True))
        for c in clients:
            if not _holds(c.name, operand, ctx, stmt, c.func):
                continue
            if field == "Timeout":
                c.timeout = values.go_value(ctx, value, duration=True)
            elif field == "Transport":
                c.transport_ref, c.transport = _transport_for(ctx, value, transports)


# --- requests and response bodies ---------------------------------------------------------------------


def _is_default_client(ctx: FileContext, operand: str, at: Node) -> bool:
    """``http.DefaultClient``, or a variable holding it (``c := http.DefaultClient``)."""
    if "." in operand:
        pkg, name = operand.rsplit(".", 1)
        return name == "DefaultClient" and ctx.is_pkg(pkg, HTTP)
    if not operand.isidentifier():
        return False
    found = ctx.lookup(operand, at)
    if found is None or found[0] is None:
        return False
    value = parse.unparen(found[0])
    if value.type != "selector_expression":
        return False
    return text(value.child_by_field_name("field")) == "DefaultClient" and found[1].is_pkg(
        text(value.child_by_field_name("operand")), HTTP
    )


def _known_client(ctx: FileContext, operand: str, at: Node, program: GoProgram) -> bool:
    if _is_default_client(ctx, operand, at):
        return True
    for c in program.clients:
        if c.package == ctx.package.name and _holds(c.name, operand, ctx, at, c.func):
            return True
    span = ctx.func_at(at)
    while span is not None:  # a parameter typed *http.Client
        typ = span.params.get(operand)
        if typ is not None:
            return typ.lstrip("*").endswith(".Client") and ctx.is_pkg(typ.lstrip("*").split(".")[0], HTTP)
        span = span.parent
    return False


def _set_context(req: ClientRequest, origin: str) -> None:
    req.with_context = True
    req.context_origin = origin
    req.context_deadline = origin == "deadline"


def _describe_request(ctx: FileContext, req: ClientRequest, build: Node, depth: int = 0) -> None:
    _, name, operand_node = call_parts(build)
    args = arguments(build)
    if name == "WithContext":  # req.WithContext(ctx): the context from here, method and URL from req
        inner = request_of(ctx, operand_node) if operand_node is not None and depth < 3 else None
        if inner is not None and inner.id != build.id:
            _describe_request(ctx, req, inner, depth + 1)
        _set_context(req, trace_context(ctx, args[0] if args else None)[0])
        return
    if name == "NewRequestWithContext" and len(args) >= 3:
        _set_context(req, trace_context(ctx, args[0])[0])
        method_node, url_node = args[1], args[2]
    elif name == "NewRequest" and len(args) >= 2:
        method_node, url_node = args[0], args[1]
    else:
        return
    req.method = _method(ctx, method_node)
    req.url = values.go_value(ctx, url_node)


def _method(ctx: FileContext, node: Node) -> str | None:
    raw = text(node)
    if "." in raw and raw.split(".", 1)[1].startswith("Method"):  # http.MethodPost
        return raw.rsplit("Method", 1)[1].upper()
    value = values.string_value(ctx, node)
    return value.upper() if value else None


def _calls(ctx: FileContext, program: GoProgram) -> None:
    http_alias = ctx.alias_of(HTTP)
    for call in ctx.caps.get("call", []):
        operand, name, _ = call_parts(call)
        if not name:
            continue
        if name in GRPC_DIALS and ctx.is_pkg(operand, GRPC):
            _grpc_dial(ctx, program, call)
            continue
        package_level = bool(http_alias) and operand == http_alias and name in REQUEST_FUNCS
        if not package_level and not (
            name in CLIENT_METHODS and operand and _known_client(ctx, operand, call, program)
        ):
            continue
        span = ctx.func_at(call)
        args = arguments(call)
        req = ClientRequest(
            call=text(call.child_by_field_name("function")),
            location=ctx.loc(call),
            func=span.top().name if span else f"{ctx.package.name}.init",
            package=ctx.package.name,
            client_ref=None if package_level else operand,
            uses_default_client=package_level or _is_default_client(ctx, operand, call),
            in_loop=span is not None and ctx.in_loop(call, within=span) is not None,
            in_handler=_per_request(ctx, call)[0],
        )
        if name == "Do":
            build = request_of(ctx, args[0]) if args else None
            if build is not None:
                _describe_request(ctx, req, build)
            later = later_with_context(ctx, span, text(args[0]), call.start_byte) if span and args else None
            if later is not None:  # req = req.WithContext(ctx) after http.NewRequest(...)
                _set_context(req, trace_context(ctx, later)[0])
        else:
            req.method = METHOD_OF[name]
            if args:
                req.url = values.go_value(ctx, args[0])
        if span is not None and not req.context_deadline and _deadline_in(ctx, span):
            req.context_deadline = True  # a WithTimeout in the same function: most likely this request's
        program.requests.append(req)
        _body_use(ctx, program, call, req)


def _deadline_in(ctx: FileContext, span: FuncSpan) -> bool:
    """A context.WithTimeout / WithDeadline call in the request's function."""
    for call in ctx.caps.get("call", []):
        if span.start <= call.start_byte < span.end:
            operand, name, _ = call_parts(call)
            if ctx.is_pkg(operand, "context") and name in ("WithTimeout", "WithDeadline"):
                return True
    return False


def _body_use(ctx: FileContext, program: GoProgram, call: Node, req: ClientRequest) -> None:
    """``resp, err := <call>``: is resp.Body closed, drained, or handed on?"""
    parent = call.parent
    if parent is None or parent.type != "expression_list":
        return
    stmt = parent.parent
    if stmt is None or stmt.type not in ("short_var_declaration", "assignment_statement"):
        return
    left = stmt.child_by_field_name("left")
    if left is None or not left.named_children:
        return
    var = text(left.named_children[0])
    if var == "_":
        return
    span = ctx.func_at(call)
    if span is None:
        return
    use = ResponseBodyUse(var=var, location=req.location, func=req.func, package=req.package)
    body = f"{var}.Body"
    for other in ctx.caps.get("call", []):
        if not (span.start <= other.start_byte < span.end) or other.start_byte <= call.start_byte:
            continue
        operand, name, _ = call_parts(other)
        args = [text(a) for a in arguments(other)]
        if operand == body and name == "Close":
            use.closed = True
        elif body in args:
            if name in ("Copy", "CopyN", "ReadAll", "NewDecoder", "NewReader", "NewScanner", "Unmarshal"):
                use.drained = True
            elif ctx.pkg_of(operand.split(".")[0]) is None and name not in ("Close",):
                use.returned = True  # handed to a helper of ours: ownership moves
        elif var in args:
            use.returned = True
    for ret in _returns_in(span):  # `return resp, nil` hands it on; `return resp.StatusCode` does not
        results = ret.named_children[0].named_children if ret.named_children else []
        if any(r.type == "identifier" and text(r) == var for r in results):
            use.returned = True
    program.body_uses.append(use)


def _returns_in(span: FuncSpan) -> list[Node]:
    body = span.node.child_by_field_name("body")
    if body is None:
        return []
    return parse.captures(body, "(return_statement) @ret").get("ret", [])


# --- gRPC and URLs ------------------------------------------------------------------------------------


def _grpc_dial(ctx: FileContext, program: GoProgram, call: Node) -> None:
    args = arguments(call)
    target_idx = 1 if call_parts(call)[1] == "DialContext" else 0
    span = ctx.func_at(call)
    keepalive = "WithKeepaliveParams" in text(call)
    if not keepalive and span is not None:  # options built in a slice beforehand
        keepalive = "WithKeepaliveParams" in text(span.top().node)
    program.grpc_dials.append(
        GrpcDial(
            location=ctx.loc(call),
            func=span.top().name if span else f"{ctx.package.name}.init",
            package=ctx.package.name,
            target=values.go_value(ctx, args[target_idx]) if len(args) > target_idx else GoValue.unset(),
            keepalive=keepalive,
        )
    )


def _url_strings(ctx: FileContext, program: GoProgram) -> None:
    if not SERVICE_LIKE_BYTES.search(ctx.source):
        return
    for node in parse.captures(ctx.tree.root_node, "(interpreted_string_literal) @s").get("s", []):
        value = parse.string_literal(node)
        if value and URL_LIKE.match(value):
            program.url_strings.append(GoValue("set", value, ctx.loc(node), text(node), "literal"))


def _sleeps_before_shutdown(ctx: FileContext, program: GoProgram) -> None:
    """``time.Sleep(d)`` before ``srv.Shutdown(ctx)`` in the same function: a drain delay in Go (XL005)."""
    mine = [s for s in program.shutdowns if s.location.path == ctx.path]
    if not mine:
        return
    sleeps = [
        c
        for c in ctx.caps.get("call", [])
        if call_parts(c)[1] == "Sleep" and ctx.is_pkg(call_parts(c)[0], "time") and arguments(c)
    ]
    for shutdown in mine:
        line = shutdown.location.line or 0
        for call in sleeps:
            span = ctx.func_at(call)
            if span is not None and span.name == shutdown.func and call.start_point[0] + 1 < line:
                shutdown.sleep_before = values.go_value(ctx, arguments(call)[0], duration=True)
