"""The Go source engine: values, servers, routes, handler resolution, errors, suppressions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tcpdoctor.evidence.golang import GoProgram, HttpServer
from tcpdoctor.model import Finding, Location, Severity
from tcpdoctor.sources.golang import analyse_files, go_suppressor
from tcpdoctor.sources.golang.extract import suppressions

Analyse = Callable[..., GoProgram]


def only_server(program: GoProgram) -> HttpServer:
    assert len(program.servers) == 1, program.servers
    return program.servers[0]


@pytest.mark.parametrize(
    ("expr", "seconds"),
    [
        ("5 * time.Second", 5.0),
        ("2*time.Minute + 30*time.Second", 150.0),
        ("time.Duration(n) * time.Second", 42.0),
        ("time.Duration(n*2) * time.Millisecond", 0.084),
        ("idle", 90.0),
        ("idle / 2", 45.0),
        ("(1500 * time.Millisecond)", 1.5),
        ("time.Hour", 3600.0),
        ("7", 7e-9),  # an untyped constant in a Duration field is nanoseconds
        ("*flagIdle", 75.0),
        ("flagVar", 33.0),
        ('envDuration("IDLE", 12*time.Second)', 12.0),
    ],
)
def test_duration_values(go_program: Analyse, expr: str, seconds: float) -> None:
    src = {
        "consts.go": 'package main\n\nimport "time"\n\nconst idle = 90 * time.Second\n',
        "main.go": f"""
var flagIdle = flag.Duration("idle", 75*time.Second, "idle timeout")
var flagVar time.Duration

func init() {{ flag.DurationVar(&flagVar, "x", 33*time.Second, "") }}

func envDuration(key string, def time.Duration) time.Duration {{ return def }}

func main() {{
	n := 42
	srv := &http.Server{{IdleTimeout: {expr}}}
	srv.ListenAndServe()
}}
""",
    }
    server = only_server(go_program(src))
    assert server.idle_timeout.is_set
    assert server.idle_timeout.seconds == pytest.approx(seconds)
    assert server.idle_timeout.text == expr
    assert server.idle_timeout.location is not None and server.idle_timeout.location.path.endswith("main.go")


def test_runtime_values_are_unknown_not_zero(go_program: Analyse) -> None:
    program = go_program(
        """
func main() {
	d, _ := time.ParseDuration(os.Getenv("IDLE"))
	srv := &http.Server{IdleTimeout: d, Addr: ":" + os.Getenv("PORT")}
	srv.ListenAndServe()
}
"""
    )
    server = only_server(program)
    assert server.idle_timeout.is_unknown and server.idle_timeout.seconds is None
    assert server.addr.is_unknown and server.addr.origin == "env" and server.port is None
    assert server.effective_idle_timeout().is_unknown


def test_fields_assigned_after_and_addresses(go_program: Analyse) -> None:
    program = go_program(
        """
const port = 9091

func main() {
	var srv http.Server
	srv.Addr = fmt.Sprintf(":%d", port)
	srv.WriteTimeout = 3 * time.Second
	srv.SetKeepAlivesEnabled(false)
	go srv.ListenAndServe()
	l, _ := net.Listen("tcp", "127.0.0.1:7070")
	other := &http.Server{}
	other.Serve(l)
}
"""
    )
    by_name = {s.name: s for s in program.servers}
    assert by_name["srv"].addr.value == ":9091" and by_name["srv"].port == 9091
    assert by_name["srv"].write_timeout.seconds == 3.0
    assert by_name["srv"].keep_alives_disabled is not None
    assert by_name["other"].port == 7070
    assert {c.server for c in program.listen_calls} == {"srv", "other"}
    assert not any(c.package_level for c in program.listen_calls)


def test_server_in_struct_field_across_files(go_program: Analyse) -> None:
    program = go_program(
        {
            "app.go": """
type App struct{ http *http.Server }

func New() *App {
	return &App{http: &http.Server{Addr: ":8080"}}
}
""",
            "run.go": """
func (a *App) Run() error {
	a.http.IdleTimeout = time.Minute
	return a.http.ListenAndServe()
}

func main() {}
""",
        }
    )
    server = only_server(program)
    assert server.name == ".http"
    assert server.idle_timeout.seconds == 60.0
    assert len(server.serve_calls) == 1


def test_shutdown_timeout_and_signals(go_program: Analyse) -> None:
    program = go_program(
        """
const grace = 25 * time.Second

func main() {
	srv := &http.Server{Addr: ":8080"}
	go srv.ListenAndServe()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	srv.Shutdown(ctx)
}
"""
    )
    server = only_server(program)
    assert [s.timeout.seconds for s in server.shutdown_calls] == [25.0]
    assert program.signals[0].signals == ["syscall.SIGTERM", "os.Interrupt"]
    assert program.signals[0].catches_sigterm


ROUTES = {
    "std.go": """
func healthz(w http.ResponseWriter, r *http.Request) {}

type api struct{}

func (a *api) users(w http.ResponseWriter, r *http.Request) {}

func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {}

func (a *api) feed() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { w.Write(nil) }
}

func logging(next http.Handler) http.Handler { return next }

func main() {
	a := &api{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", healthz)
	mux.HandleFunc("example.com/users/{id}", a.users)
	mux.Handle("/wrapped", logging(http.HandlerFunc(healthz)))
	mux.Handle("/feed", a.feed())
	mux.Handle("/self", &api{})
	http.HandleFunc("/debug", func(w http.ResponseWriter, r *http.Request) {})
}
""",
    "gorilla/main.go": """package gorilla

import (
	"net/http"

	"github.com/gorilla/mux"
)

func ready(w http.ResponseWriter, r *http.Request) {}

func Setup() {
	r := mux.NewRouter()
	r.HandleFunc("/ready", ready).Methods("GET", "HEAD")
	s := r.PathPrefix("/v1").Subrouter()
	s.HandleFunc("/items", ready)
}
""",
    "chi/main.go": """package chi

import (
	"net/http"

	"github.com/go-chi/chi/v5"
)

func list(w http.ResponseWriter, r *http.Request) {}

func Setup() {
	r := chi.NewRouter()
	r.Get("/livez", list)
	r.Route("/orders", func(r chi.Router) {
		r.Post("/", list)
		r.Method("DELETE", "/{id}", http.HandlerFunc(list))
	})
}
""",
    "gin/main.go": """package ginapp

import "github.com/gin-gonic/gin"

func ping(c *gin.Context) {}

func Setup() {
	r := gin.New()
	v1 := r.Group("/v1")
	v1.GET("/ping", ping)
	r.POST("/upload", gin.Logger(), ping)
}
""",
    "echo/main.go": """package echoapp

import "github.com/labstack/echo/v4"

func status(c echo.Context) error { return nil }

func Setup() {
	e := echo.New()
	e.GET("/status", status)
}
""",
}


def test_registrations_for_every_router(go_program: Analyse) -> None:
    program = go_program(ROUTES)
    got = {
        (r.router, r.method, r.pattern, r.host, program.handlers[r.handler].name if r.handler else None)
        for r in program.registrations
    }
    assert got == {
        ("servemux", "GET", "/healthz", None, "main.healthz"),
        ("servemux", None, "/users/{id}", "example.com", "main.api.users"),
        ("servemux", None, "/wrapped", None, "main.healthz"),
        ("servemux", None, "/feed", None, "main.api.feed.func1"),
        ("servemux", None, "/self", None, "main.api.ServeHTTP"),
        ("default", None, "/debug", None, "main.main.func1"),
        ("gorilla", "GET,HEAD", "/ready", None, "gorilla.ready"),
        ("gorilla", None, "/v1/items", None, "gorilla.ready"),
        ("chi", "GET", "/livez", None, "chi.list"),
        ("chi", "POST", "/orders/", None, "chi.list"),
        ("chi", "DELETE", "/orders/{id}", None, "chi.list"),
        ("gin", "GET", "/v1/ping", None, "ginapp.ping"),
        ("gin", "POST", "/upload", None, "ginapp.ping"),
        ("echo", "GET", "/status", None, "echoapp.status"),
    }
    styles = {h.name: h.style for h in program.handlers.values()}
    assert styles["ginapp.ping"] == "gin" and styles["echoapp.status"] == "echo"


def test_syntax_errors_counted_and_rest_analysed(go_program: Analyse) -> None:
    program = go_program(
        """
func broken( {
	x :=
}

func main() {
	http.ListenAndServe(":8080", nil)
}
"""
    )
    assert program.parse_error_count >= 1
    assert program.files[0].first_error is not None
    assert [c.port for c in program.listen_calls] == [8080]


def test_tests_vendor_and_testdata_skipped(go_program: Analyse, tmp_path: Path) -> None:
    files = {
        "main.go": 'func main() { http.ListenAndServe(":1", nil) }\n',
        "main_test.go": 'func helper() { http.ListenAndServe(":2", nil) }\n',
        "vendor/x/x.go": 'package x\n\nimport "net/http"\n\nfunc X() { http.ListenAndServe(":3", nil) }\n',
        "testdata/y.go": 'package y\n\nimport "net/http"\n\nfunc Y() { http.ListenAndServe(":4", nil) }\n',
    }
    assert sorted(c.port for c in go_program(files).listen_calls) == [1]
    assert sorted(c.port for c in go_program(files, include_tests=True).listen_calls) == [1, 2]


def test_suppression_comments() -> None:
    src = b"""package main
// tcpdoctor:ignore SRV002 proxy keeps its own limit
x := 1 //tcpdoctor:ignore SRV001,SSE reason words SRV009
//tcpdoctor:ignore because
"""
    assert suppressions(src) == {2: frozenset({"SRV002"}), 3: frozenset({"SRV001", "SSE"})}


def test_go_suppressor_on_the_line_and_above(go_program: Analyse) -> None:
    program = go_program(
        """
func main() {
	//tcpdoctor:ignore SRV004 the job exits by itself
	http.ListenAndServe(":8080", nil) //tcpdoctor:ignore SRV001 debug port
}
"""
    )
    path = program.files[0].path
    line = program.listen_calls[0].location.line
    suppressed = go_suppressor(program)

    def finding(rule: str, at: int | None) -> Finding:
        return Finding(rule, Severity.WARNING, "t", "m", Location(path, at))

    assert suppressed(finding("SRV001", line))
    assert suppressed(finding("SRV004", line))  # the comment on the line above
    assert not suppressed(finding("SRV002", line))
    assert line is not None and not suppressed(finding("SRV001", line + 2))


def test_parallel_equals_serial(tmp_path: Path) -> None:
    from .conftest import write_tree

    files: dict[str, str] = {}
    for i in range(60):
        files[f"svc{i}/main.go"] = f"""package svc{i}

import (
	"net/http"
	"time"
)

const idle{i} = {i + 1} * time.Second

func health(w http.ResponseWriter, r *http.Request) {{ w.Write(nil) }}

func Run() {{
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", health)
	srv := &http.Server{{Addr: ":{8000 + i}", Handler: mux, IdleTimeout: idle{i}}}
	srv.ListenAndServe()
}}
"""
    write_tree(tmp_path, files)
    paths = sorted(tmp_path.rglob("*.go"))
    serial = analyse_files(paths, workers=1)
    parallel = analyse_files(paths, workers=2, min_parallel=0)
    assert len(parallel.files) == len(serial.files) == 60

    def summary(p: GoProgram) -> list[tuple[int | None, float | None, str | None]]:
        return sorted((s.port, s.idle_timeout.seconds, None) for s in p.servers)

    assert summary(parallel) == summary(serial)
    assert sorted(r.handler or "" for r in parallel.registrations) == sorted(
        r.handler or "" for r in serial.registrations
    )
    assert all(r.handler for r in parallel.registrations)


def test_value_through_a_parameter_from_its_only_call_site(go_program: Analyse) -> None:
    program = go_program(
        """
var beat = flag.Duration("heartbeat", 20*time.Second, "")

func stream(every time.Duration) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		t := time.NewTicker(every)
		defer t.Stop()
	}
}

func other(every time.Duration) {}

func main() {
	http.Handle("/events", stream(*beat))
	other(time.Second)
	other(time.Minute)
}
"""
    )
    (handler,) = [h for h in program.handlers.values() if h.event_stream]
    assert handler.heartbeat is not None
    assert handler.heartbeat.seconds == 20.0 and handler.heartbeat.origin == "flag-default"


def test_parameter_with_disagreeing_call_sites_is_unknown(go_program: Analyse) -> None:
    program = go_program(
        """
func newServer(idle time.Duration) *http.Server {
	return &http.Server{IdleTimeout: idle}
}

func main() {
	newServer(time.Second).ListenAndServe()
	newServer(time.Minute).ListenAndServe()
}
"""
    )
    server = only_server(program)
    assert server.idle_timeout.is_unknown and server.idle_timeout.origin == "param"


def test_server_returned_by_a_constructor(go_program: Analyse) -> None:
    program = go_program(
        """
func newServer(h http.Handler) *http.Server {
	return &http.Server{Addr: ":8080", Handler: h, ReadHeaderTimeout: time.Second}
}

func main() {
	srv := newServer(http.NewServeMux())
	srv.IdleTimeout = 90 * time.Second
	go srv.ListenAndServe()
	srv.Shutdown(context.Background())
}
"""
    )
    server = only_server(program)
    assert server.func == "main.newServer"
    assert len(server.serve_calls) == 1 and len(server.shutdown_calls) == 1
    assert server.idle_timeout.seconds == 90.0
    assert server.shutdown_calls[0].timeout.state == "unset"  # context.Background(): no deadline


def test_url_literals_of_a_config_package(go_program: Analyse) -> None:
    program = go_program(
        {
            "config/config.go": """package config

// see "http://example.com/docs" for the format
const Ingest = "http://ingest.markets.svc:9090"

var Other = "https://api.default.svc.cluster.local/v1"
""",
        }
    )
    got = sorted((v.value, v.location.line if v.location else None) for v in program.url_strings)
    assert got == [("http://ingest.markets.svc:9090", 4), ("https://api.default.svc.cluster.local/v1", 6)]


def test_values_exported_by_another_package(go_program: Analyse) -> None:
    program = go_program(
        {
            "go.mod": "module example.com/svc\n",
            "internal/config/config.go": """package config

import "time"

const IdleTimeout = 75 * time.Second
const Addr = ":9443"
var HeaderTimeout = 3 * time.Second
""",
            "cmd/api/main.go": """package main

import (
	"net/http"

	"example.com/svc/internal/config"
)

func main() {
	srv := &http.Server{
		Addr:              config.Addr,
		IdleTimeout:       config.IdleTimeout,
		ReadHeaderTimeout: 2 * config.HeaderTimeout,
		WriteTimeout:      config.Missing,
	}
	srv.ListenAndServe()
}
""",
        }
    )
    server = only_server(program)
    assert server.idle_timeout.seconds == 75.0 and server.idle_timeout.text == "config.IdleTimeout"
    assert server.idle_timeout.location is not None
    assert server.idle_timeout.location.path.endswith("internal/config/config.go")
    assert server.addr.value == ":9443" and server.port == 9443
    assert server.read_header_timeout.is_unknown  # arithmetic on another package's value: not followed
    assert server.write_timeout.is_unknown
