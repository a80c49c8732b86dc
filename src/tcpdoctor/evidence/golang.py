"""Evidence read from Go source: HTTP servers, handlers, clients, shutdown.

Plain records with positions, produced by ``tcpdoctor.sources.golang`` and read by
the SRV, CLI and SSE rules and the cross-layer (XL) rules.

Values that configure a timeout or a limit are :class:`GoValue`: either *set*
(a number of seconds for a ``time.Duration``, a number, a bool or a string, as
the source evaluates it), *unset* (the field was never written: the Go zero
value / default applies), or *unknown* (the value comes from runtime input the
analysis cannot evaluate: a flag without a literal default, a config struct, a
function result). Rules must treat *unknown* as "cannot tell", never as zero.

Naming: a function is ``pkg.Func``, a method ``pkg.Type.Method``, a closure
``pkg.Func.func1`` (the order of ``func`` literals inside the enclosing
function, as the Go compiler names them).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

from tcpdoctor.model import Location, Subject

ValueState = Literal["set", "unset", "unknown"]
Scalar = float | int | bool | str


@dataclass(frozen=True)
class GoValue:
    """A configuration value as the source gives it.

    ``value``: seconds (float) for a ``time.Duration``; int/bool/str otherwise.
    ``origin``: literal | const | var | flag-default | env-default | default | runtime.
    """

    state: ValueState
    value: Scalar | None = None
    location: Location | None = None
    text: str = ""
    origin: str = "literal"

    @classmethod
    def unset(cls) -> GoValue:
        return cls("unset")

    @classmethod
    def unknown(cls, text: str = "", location: Location | None = None, origin: str = "runtime") -> GoValue:
        return cls("unknown", None, location, text, origin)

    @property
    def is_set(self) -> bool:
        return self.state == "set"

    @property
    def is_unknown(self) -> bool:
        return self.state == "unknown"

    @property
    def seconds(self) -> float | None:
        """The value in seconds when it is a known duration (0.0 when unset: Go's zero value)."""
        if self.state == "unset":
            return 0.0
        if self.state == "set" and isinstance(self.value, int | float) and not isinstance(self.value, bool):
            return float(self.value)
        return None

    @property
    def truthy(self) -> bool | None:
        """A bool field: False when unset, None when unknown."""
        if self.state == "unset":
            return False
        if self.state == "set":
            return bool(self.value)
        return None

    def describe(self, name: str) -> str:
        """``IdleTimeout is unset`` / ``ReadTimeout is 5s (5 * time.Second)`` / ``... is unknown (cfg.X)``."""
        if self.state == "unset":
            return f"{name} is unset"
        if self.state == "unknown":
            return f"{name} is unknown ({self.text or 'runtime input'})"
        return f"{name} is {format_value(self.value)}" + (
            f" ({self.text})" if self.text and self.text != format_value(self.value) else ""
        )


def format_seconds(seconds: float) -> str:
    """5.0 -> '5s', 90.0 -> '1m30s', 0.5 -> '500ms' (Go's time.Duration.String style)."""
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    whole = int(seconds)
    rest = seconds - whole
    hours, rem = divmod(whole, 3600)
    minutes, secs = divmod(rem, 60)
    text = ""
    if hours:
        text += f"{hours}h"
    if hours or minutes:
        text += f"{minutes}m"
    text += f"{secs + rest:g}s"
    return text


def format_value(value: Scalar | None) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format_seconds(value)
    if value is None:
        return "unset"
    return str(value)


@dataclass
class GoFile:
    path: str
    package: str
    size_bytes: int = 0
    imports: dict[str, str] = field(default_factory=dict)  # local name -> import path
    syntax_errors: int = 0  # ERROR / MISSING nodes in the tree
    first_error: Location | None = None
    has_main: bool = False  # package main with func main
    main_location: Location | None = None
    suppressions: dict[int, frozenset[str]] = field(default_factory=dict)  # line -> IDs ignored there


@dataclass
class HttpServer:
    """An ``http.Server`` value (composite literal + fields assigned later)."""

    name: str  # variable or field it lives in (`srv`, `s.httpServer`) or "" for an anonymous literal
    location: Location  # the `http.Server{` literal
    func: str  # enclosing function, pkg.Func
    package: str
    read_timeout: GoValue = field(default_factory=GoValue.unset)
    read_header_timeout: GoValue = field(default_factory=GoValue.unset)
    write_timeout: GoValue = field(default_factory=GoValue.unset)
    idle_timeout: GoValue = field(default_factory=GoValue.unset)
    max_header_bytes: GoValue = field(default_factory=GoValue.unset)
    addr: GoValue = field(default_factory=GoValue.unset)
    port: int | None = None  # from addr when known
    handler_ref: str | None = None  # source text of the Handler field (a mux variable, a func, ...)
    keep_alives_disabled: Location | None = None  # srv.SetKeepAlivesEnabled(false)
    keep_alives_disabled_func: str = ""  # the function that calls it (a shutdown path is fine)
    serve_calls: list[Location] = field(default_factory=list)  # srv.ListenAndServe() etc.
    shutdown_calls: list[ShutdownCall] = field(default_factory=list)

    @property
    def subject(self) -> Subject:
        return Subject(go=self.func, path=self.location.path)

    def effective_read_header_timeout(self) -> GoValue:
        """net/http Server.readHeaderTimeout(): ReadHeaderTimeout if non-zero, else ReadTimeout.

        A result <= 0 means no timeout.
        """
        rht = self.read_header_timeout
        if rht.is_unknown or (rht.seconds or 0) != 0:
            return rht
        return self.read_timeout

    def effective_idle_timeout(self) -> GoValue:
        """net/http Server.idleTimeout(): IdleTimeout if non-zero, else ReadTimeout. <= 0: none."""
        idle = self.idle_timeout
        if idle.is_unknown or (idle.seconds or 0) != 0:
            return idle
        return self.read_timeout


@dataclass
class ListenCall:
    """``http.ListenAndServe(addr, h)`` / ``ListenAndServeTLS`` / ``Serve(l, h)`` / ``ServeTLS``.

    The package-level functions build a zero ``http.Server``: no timeouts at all.
    ``server`` is set when the call is a method on a known :class:`HttpServer`.
    """

    func: str  # ListenAndServe | ListenAndServeTLS | Serve | ServeTLS
    location: Location
    enclosing: str  # pkg.Func
    package: str
    package_level: bool  # http.ListenAndServe(...): the defaults, no timeouts
    addr: GoValue = field(default_factory=GoValue.unset)
    port: int | None = None
    handler_ref: str | None = None  # "nil" / "" means http.DefaultServeMux
    server: str | None = None  # receiver text when a method call (srv.ListenAndServe())
    framework: str | None = None  # "gin.Engine.Run": a framework call that serves with the package defaults

    @property
    def subject(self) -> Subject:
        return Subject(go=self.enclosing, path=self.location.path)


RouterKind = Literal["servemux", "default", "gorilla", "chi", "gin", "echo", "unknown"]


@dataclass
class HandlerRegistration:
    router: RouterKind
    pattern: str  # path part only ("/healthz"), host removed
    location: Location
    handler_ref: str  # source text of the handler argument
    handler: str | None = None  # resolved Handler.name, when known
    method: str | None = None  # GET from "GET /healthz", .Methods("GET"), r.Get, e.GET ...
    mux: str | None = None  # receiver text (`mux`, `r`, `http` for DefaultServeMux)
    host: str | None = None  # "example.com/path" patterns
    enclosing: str = ""
    package: str = ""


IoKind = Literal["sql", "redis", "http", "grpc", "net", "other"]


@dataclass
class IoCall:
    """A blocking call in a handler: kind, the call's text, where, and whether it gets a context."""

    kind: IoKind
    call: str
    location: Location
    with_context: bool = False
    # where the context it gets comes from (see ClientRequest.context_origin; for client.Do(req) the
    # context the request was built with) and the timeout of the context.WithTimeout it derives from
    # (unknown for WithDeadline), None when no deadline was traced to it
    context_origin: str = ""
    deadline: GoValue | None = None


@dataclass
class Deadline:
    """``context.WithTimeout(parent, d)`` / ``context.WithDeadline`` / a client Timeout seen in a handler."""

    timeout: GoValue
    location: Location
    from_request: bool = False  # parent is r.Context()
    kind: Literal["context", "client"] = "context"  # context.WithTimeout/WithDeadline | http.Client Timeout


@dataclass
class SyncUse:
    """A lock or channel operation on something that outlives the request (a package or receiver field)."""

    kind: Literal["lock", "rlock", "chan-send", "chan-recv", "select"]
    target: str  # normalised text: `mu`, `s.mu`, `s.jobs`
    location: Location
    shared: bool = True  # package-level or receiver field (not a local)


@dataclass
class Handler:
    """A function or closure that serves HTTP (net/http, gin.Context or echo.Context)."""

    name: str  # pkg.Func / pkg.Type.Method / pkg.Func.func1
    location: Location
    package: str
    style: Literal["net/http", "gin", "echo"] = "net/http"
    end_line: int = 0
    # streaming
    event_stream: Location | None = None  # Content-Type: text/event-stream
    flushes: list[Location] = field(default_factory=list)
    writes: list[Location] = field(default_factory=list)
    write_loop: Location | None = None  # a for loop that writes to the response
    loop_exits_on_context: bool = False  # the loop selects on ctx.Done() / checks ctx.Err()
    uses_request_context: bool = False
    checks_write_errors: bool = False
    unchecked_writes: list[Location] = field(default_factory=list)
    heartbeat: GoValue | None = None  # time.NewTicker / time.Tick interval in a streaming loop
    headers: dict[str, tuple[str, Location]] = field(default_factory=dict)  # canonical name -> value
    # what it waits on
    io_calls: list[IoCall] = field(default_factory=list)
    deadlines: list[Deadline] = field(default_factory=list)
    sync: list[SyncUse] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)  # callees, as written (`s.db.PingContext`, `check`)
    connection_close: Location | None = None  # w.Header().Set("Connection", "close")
    write_deadline: Location | None = None  # http.NewResponseController(w).SetWriteDeadline(...)

    @property
    def key(self) -> str:
        """Its key in ``GoProgram.handlers`` (see :func:`handler_key`)."""
        return handler_key(os.path.dirname(self.location.path) or ".", self.name)

    @property
    def streaming(self) -> bool:
        return self.event_stream is not None or (self.write_loop is not None and bool(self.flushes))

    @property
    def subject(self) -> Subject:
        return Subject(go=self.name, path=self.location.path)


@dataclass
class Dialer:
    location: Location
    timeout: GoValue = field(default_factory=GoValue.unset)
    keep_alive: GoValue = field(default_factory=GoValue.unset)  # 0 = 15s, negative disables


@dataclass
class HttpTransport:
    name: str
    location: Location
    func: str
    package: str
    is_default: bool = False  # http.DefaultTransport (or a Clone of it)
    idle_conn_timeout: GoValue = field(default_factory=GoValue.unset)
    max_idle_conns: GoValue = field(default_factory=GoValue.unset)
    max_idle_conns_per_host: GoValue = field(default_factory=GoValue.unset)
    max_conns_per_host: GoValue = field(default_factory=GoValue.unset)
    disable_keep_alives: GoValue = field(default_factory=GoValue.unset)
    force_attempt_http2: GoValue = field(default_factory=GoValue.unset)
    tls_handshake_timeout: GoValue = field(default_factory=GoValue.unset)
    response_header_timeout: GoValue = field(default_factory=GoValue.unset)
    custom_dial: bool = False
    tls_config: bool = False
    dialer: Dialer | None = None
    in_handler: bool = False
    in_loop: bool = False

    @property
    def subject(self) -> Subject:
        return Subject(go=self.func, path=self.location.path)


@dataclass
class HttpClient:
    name: str
    location: Location
    func: str
    package: str
    is_default: bool = False  # http.DefaultClient / http.Get ...
    timeout: GoValue = field(default_factory=GoValue.unset)
    transport_ref: str | None = None  # source text of the Transport field; None = DefaultTransport
    transport: HttpTransport | None = None  # when the Transport is a literal or resolved variable
    in_handler: bool = False
    in_loop: bool = False

    @property
    def subject(self) -> Subject:
        return Subject(go=self.func, path=self.location.path)


@dataclass
class ClientRequest:
    """An outgoing request: http.Get/Post/Head, client.Do/Get/Post, with what bounds it."""

    call: str  # source text of the callee
    location: Location
    func: str
    package: str
    client_ref: str | None = None  # `http.DefaultClient`, `c.http`, None for http.Get
    uses_default_client: bool = False
    with_context: bool = False  # http.NewRequestWithContext / req.WithContext
    context_deadline: bool = False  # a context.WithTimeout/WithDeadline in the same function
    method: str | None = None
    url: GoValue = field(default_factory=GoValue.unset)
    in_loop: bool = False
    in_handler: bool = False  # made while serving a request: runs concurrently, once per request
    # where the request's context comes from: "deadline" (WithTimeout/WithDeadline), "background"
    # (Background/TODO: none), "caller" (a parameter: the caller decides), "request" (r.Context()), "" (none)
    context_origin: str = ""


@dataclass
class KeepaliveSettings:
    """x/net/http2 Transport pings, gRPC keepalive.ClientParameters / ServerParameters."""

    kind: Literal["http2-transport", "grpc-client", "grpc-server", "grpc-enforcement"]
    location: Location
    func: str
    package: str
    ping_interval: GoValue = field(default_factory=GoValue.unset)  # ReadIdleTimeout / Time
    ping_timeout: GoValue = field(default_factory=GoValue.unset)  # PingTimeout / Timeout
    max_connection_age: GoValue = field(default_factory=GoValue.unset)
    max_connection_idle: GoValue = field(default_factory=GoValue.unset)


@dataclass
class GrpcDial:
    """grpc.Dial / grpc.DialContext / grpc.NewClient and whether keepalive options are passed."""

    location: Location
    func: str
    package: str
    target: GoValue = field(default_factory=GoValue.unset)
    keepalive: bool = False


@dataclass
class ResponseBodyUse:
    """``resp, err := client.Do(req)``: is resp.Body closed, and drained before close?"""

    var: str
    location: Location  # the call that returned the response
    func: str
    package: str
    closed: bool = False
    drained: bool = False  # io.Copy(io.Discard, ...), io.ReadAll, a decoder reading it
    returned: bool = False  # resp is returned or handed to another function: ownership moves


@dataclass
class ShutdownCall:
    location: Location
    func: str
    server: str  # receiver text
    timeout: GoValue = field(default_factory=GoValue.unset)  # of its context; unset = no deadline
    sleep_before: GoValue | None = None  # a time.Sleep before it in the same function (preStop-like delay)


@dataclass
class SignalHandling:
    """signal.Notify / signal.NotifyContext and the signals it asks for."""

    location: Location
    func: str
    signals: list[str] = field(default_factory=list)  # "SIGTERM", "Interrupt", ...

    @property
    def catches_sigterm(self) -> bool:
        return any(s in ("SIGTERM", "syscall.SIGTERM", "unix.SIGTERM") for s in self.signals)


def handler_key(directory: str, name: str) -> str:
    """The key of a handler in ``GoProgram.handlers``: names repeat across packages (`main.health`)."""
    return f"{directory}:{name}"


@dataclass
class MainPackage:
    directory: str
    location: Location  # func main


@dataclass
class GoProgram:
    """All the Go evidence of one scan."""

    roots: list[str] = field(default_factory=list)
    files: list[GoFile] = field(default_factory=list)
    servers: list[HttpServer] = field(default_factory=list)
    listen_calls: list[ListenCall] = field(default_factory=list)
    registrations: list[HandlerRegistration] = field(default_factory=list)
    handlers: dict[str, Handler] = field(default_factory=dict)  # by handler_key(directory, name)
    transports: list[HttpTransport] = field(default_factory=list)
    clients: list[HttpClient] = field(default_factory=list)
    dialers: list[Dialer] = field(default_factory=list)
    requests: list[ClientRequest] = field(default_factory=list)
    keepalives: list[KeepaliveSettings] = field(default_factory=list)
    grpc_dials: list[GrpcDial] = field(default_factory=list)
    body_uses: list[ResponseBodyUse] = field(default_factory=list)
    shutdowns: list[ShutdownCall] = field(default_factory=list)
    signals: list[SignalHandling] = field(default_factory=list)
    url_strings: list[GoValue] = field(default_factory=list)  # "http://api.default.svc:8080" literals
    main_packages: list[MainPackage] = field(default_factory=list)
    # exported package-level values (durations, strings) by package directory, for cross-package refs
    constants: dict[str, dict[str, GoValue]] = field(default_factory=dict)
    _by_path: dict[str, GoFile] = field(default_factory=dict, repr=False, compare=False)

    @property
    def parse_error_files(self) -> list[GoFile]:
        return [f for f in self.files if f.syntax_errors]

    @property
    def parse_error_count(self) -> int:
        return sum(f.syntax_errors for f in self.files)

    def handler_for(self, registration: HandlerRegistration) -> Handler | None:
        return self.handlers.get(registration.handler) if registration.handler else None

    def registrations_for(self, handler: Handler) -> list[HandlerRegistration]:
        key = handler.key
        return [r for r in self.registrations if r.handler == key]

    def file(self, path: str) -> GoFile | None:
        if len(self._by_path) != len(self.files):
            self._by_path = {f.path: f for f in self.files}
        return self._by_path.get(path)

    def suppressed(self, rule_id: str, path: str, line: int | None) -> bool:
        """`//tcpdoctor:ignore ID reason` on the line or the line above."""
        if line is None:
            return False
        found = self.file(path)
        if found is None:
            return False
        for at in (line, line - 1):
            ids = found.suppressions.get(at)
            if ids and any(rule_id.startswith(i) for i in ids):
                return True
        return False

    def servers_in(self, directory: str) -> list[HttpServer]:
        """Servers declared in files under ``directory``."""
        prefix = directory.rstrip("/") + "/"
        return [s for s in self.servers if s.location.path.startswith(prefix)]
