"""SRV001-SRV007: a case that must trigger each rule and a close one that must not."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tcpdoctor.model import Finding

Run = Callable[..., list[Finding]]


def line_of(finding: Finding, needle: str) -> int:
    """The 1-based line of the first occurrence of ``needle`` in the file the finding points at."""
    assert finding.location is not None
    with open(finding.location.path) as fh:
        return next(i for i, line in enumerate(fh, 1) if needle in line)


SHUTDOWN_TAIL = """
	go srv.ListenAndServe()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
}
"""


def server(fields: str, body: str = "", tail: str = SHUTDOWN_TAIL) -> str:
    return (
        """
func main() {
	mux := http.NewServeMux()
"""
        + body
        + """
	srv := &http.Server{
		Addr:    ":8080",
		Handler: mux,
"""
        + fields
        + """
	}
"""
        + tail
    )


# --- SRV001 ---------------------------------------------------------------------------------


def test_srv001_package_level_listen_and_serve(findings: Run) -> None:
    found = findings(
        """
func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {})
	http.ListenAndServe(":8080", nil)
}
""",
        "SRV001",
    )
    assert len(found) == 1
    assert found[0].location is not None and found[0].location.line == line_of(
        found[0], "http.ListenAndServe"
    )
    assert 'http.ListenAndServe(":8080", ...)' in found[0].message
    assert found[0].subject.go == "main.main"


def test_srv001_server_without_header_timeouts(findings: Run) -> None:
    found = findings(server("\t\tIdleTimeout: 2 * time.Minute,\n"), "SRV001")
    assert len(found) == 1
    assert "in http.Server srv, ReadHeaderTimeout is unset and ReadTimeout is unset:" in found[0].message


def test_srv001_read_timeout_covers_headers(findings: Run) -> None:
    # net/http: ReadHeaderTimeout falls back to ReadTimeout
    assert findings(server("\t\tReadTimeout: 30 * time.Second,\n"), "SRV001") == []


def test_srv001_header_timeout_assigned_after_literal(findings: Run) -> None:
    src = server("", tail="\tsrv.ReadHeaderTimeout = 5 * time.Second\n" + SHUTDOWN_TAIL)
    assert findings(src, "SRV001") == []


def test_srv001_unknown_value_is_not_a_finding(findings: Run) -> None:
    src = server("\t\tReadHeaderTimeout: cfg.HeaderTimeout,\n", body="\tcfg := loadConfig()\n")
    src += "\ntype Config struct{ HeaderTimeout time.Duration }\n\nfunc loadConfig() Config { return Config{} }\n"
    assert findings(src, "SRV001") == []


# --- SRV002 ---------------------------------------------------------------------------------


def test_srv002_no_idle_limit_message(findings: Run) -> None:
    found = findings(server("\t\tReadHeaderTimeout: 5 * time.Second,\n"), "SRV002")
    assert len(found) == 1
    assert "IdleTimeout is unset and ReadTimeout is unset: idle keep-alive connections are never closed" in (
        found[0].message
    )


def test_srv002_read_timeout_is_the_idle_fallback(findings: Run) -> None:
    assert findings(server("\t\tReadTimeout: 30 * time.Second,\n"), "SRV002") == []


def test_srv002_negative_idle_timeout_means_none(findings: Run) -> None:
    src = server("\t\tReadTimeout: 30 * time.Second,\n\t\tIdleTimeout: -1,\n")
    found = findings(src, "SRV002")
    assert len(found) == 1


ALB_MANIFESTS = """
apiVersion: v1
kind: Service
metadata: {name: api}
spec:
  selector: {app: api}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: api
  annotations:
    alb.ingress.kubernetes.io/load-balancer-attributes: idle_timeout.timeout_seconds=120
spec:
  ingressClassName: alb
  rules:
  - http:
      paths:
      - path: /
        pathType: Prefix
        backend: {service: {name: api, port: {number: 80}}}
"""


def test_srv002_idle_shorter_than_alb_in_front(findings: Run) -> None:
    src = server("\t\tReadHeaderTimeout: 5 * time.Second,\n\t\tIdleTimeout: 60 * time.Second,\n")
    found = findings(src, "SRV002", manifests=ALB_MANIFESTS)
    assert len(found) == 1
    assert "after 1m0s" in found[0].message and "120s" in found[0].message and "AWS ALB" in found[0].message


def test_srv002_idle_longer_than_alb_in_front(findings: Run) -> None:
    src = server("\t\tReadHeaderTimeout: 5 * time.Second,\n\t\tIdleTimeout: 180 * time.Second,\n")
    assert findings(src, "SRV002", manifests=ALB_MANIFESTS) == []


def test_srv002_alb_routes_to_another_port(findings: Run) -> None:
    src = server("\t\tReadHeaderTimeout: 5 * time.Second,\n\t\tIdleTimeout: 60 * time.Second,\n")
    assert (
        findings(src, "SRV002", manifests=ALB_MANIFESTS.replace("targetPort: 8080", "targetPort: 9000")) == []
    )


# --- SRV003 ---------------------------------------------------------------------------------

STREAM = """
func events(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/event-stream")
	rc := http.NewResponseController(w)
	for {
		select {
		case <-r.Context().Done():
			return
		case <-time.After(time.Second):
		}
		if _, err := fmt.Fprintf(w, "data: tick\\n\\n"); err != nil {
			return
		}
		rc.Flush()
	}
}
"""


def test_srv003_write_timeout_with_stream(findings: Run) -> None:
    src = (
        server("\t\tWriteTimeout: 10 * time.Second,\n", body='\tmux.HandleFunc("GET /events", events)\n')
        + STREAM
    )
    found = findings(src, "SRV003")
    assert len(found) == 1
    assert "WriteTimeout 10s" in found[0].message and "main.events at GET /events" in found[0].message
    assert found[0].location is not None and found[0].location.line == line_of(found[0], "WriteTimeout:")


def test_srv003_stream_on_another_mux(findings: Run) -> None:
    body = '\tadmin := http.NewServeMux()\n\tadmin.HandleFunc("/events", events)\n\tgo http.ListenAndServe(":9090", admin)\n'
    src = server("\t\tWriteTimeout: 10 * time.Second,\n", body=body) + STREAM
    assert findings(src, "SRV003") == []


def test_srv003_no_write_timeout(findings: Run) -> None:
    src = (
        server("\t\tReadHeaderTimeout: time.Second,\n", body='\tmux.HandleFunc("/events", events)\n') + STREAM
    )
    assert findings(src, "SRV003") == []


# --- SRV004 ---------------------------------------------------------------------------------


def test_srv004_served_never_shut_down(findings: Run) -> None:
    src = server("\t\tReadHeaderTimeout: time.Second,\n", tail="\tsrv.ListenAndServe()\n}\n")
    found = findings(src, "SRV004")
    assert len(found) == 1 and "Shutdown is never called" in found[0].message


def test_srv004_shutdown_on_sigint_only(findings: Run) -> None:
    tail = SHUTDOWN_TAIL.replace("syscall.SIGTERM", "os.Interrupt")
    found = findings(server("\t\tReadHeaderTimeout: time.Second,\n", tail=tail), "SRV004")
    assert len(found) == 1 and "os.Interrupt" in found[0].message and "SIGTERM" in found[0].message


@pytest.mark.parametrize("addr", ["127.0.0.1:6060", "localhost:6060", "[::1]:6060"])
def test_srv004_loopback_server_is_info(findings: Run, addr: str) -> None:
    # a pprof / debug server on loopback: no client behind the Service loses a request on rollout
    src = server("\t\tReadHeaderTimeout: time.Second,\n", tail="\tsrv.ListenAndServe()\n}\n")
    (found,) = findings(src.replace('":8080"', f'"{addr}"'), "SRV004")
    assert found.severity.name == "INFO"
    assert f'listens on loopback only ("{addr}")' in found.message


def test_srv004_all_interfaces_stays_a_warning(findings: Run) -> None:
    src = server("\t\tReadHeaderTimeout: time.Second,\n", tail="\tsrv.ListenAndServe()\n}\n")
    (found,) = findings(src.replace('":8080"', '"0.0.0.0:8080"'), "SRV004")
    assert found.severity.name == "WARNING" and "info only" not in found.message


def test_srv004_package_level_debug_listener_is_info(findings: Run) -> None:
    src = 'func main() {\n\tgo http.ListenAndServe("localhost:6060", nil)\n\tselect {}\n}\n'
    (found,) = findings(src, "SRV004")
    assert found.severity.name == "INFO" and "loopback only" in found.message


LIBRARY = """package api

import (
\t"net/http"
\t"time"
)

type Server struct{ http *http.Server }

func New(h http.Handler) *Server {
\treturn &Server{http: &http.Server{Addr: ":8080", Handler: h, ReadHeaderTimeout: time.Second}}
}

func (s *Server) Run() error { return s.http.ListenAndServe() }
"""


def test_srv004_server_in_a_library_package_is_info(findings: Run) -> None:
    (found,) = findings({"internal/api/server.go": LIBRARY}, "SRV004")
    assert found.severity.name == "INFO"
    assert "library package api, not package main" in found.message


def test_srv004_graceful(findings: Run) -> None:
    assert findings(server("\t\tReadHeaderTimeout: time.Second,\n"), "SRV004") == []


# --- SRV005 ---------------------------------------------------------------------------------

HEALTH = """
type App struct{ db *sql.DB }

func (a *App) healthz(w http.ResponseWriter, r *http.Request) {
%s
	w.WriteHeader(200)
}
"""


def health_src(body: str) -> str:
    return server(
        "\t\tReadHeaderTimeout: time.Second,\n",
        body='\ta := &App{}\n\tmux.HandleFunc("/healthz", a.healthz)\n',
    ) + (HEALTH % body)


def test_srv005_ping_without_deadline(findings: Run) -> None:
    found = findings(health_src("\tif err := a.db.PingContext(r.Context()); err != nil { return }"), "SRV005")
    assert len(found) == 1
    assert "a.db.PingContext (sql)" in found[0].message and "no context.WithTimeout" in found[0].message


def test_srv005_deadline_longer_than_probe(findings: Run) -> None:
    body = "\tctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)\n\tdefer cancel()\n\ta.db.PingContext(ctx)"
    found = findings(health_src(body), "SRV005")
    assert len(found) == 1 and "3s" in found[0].message


def test_srv005_short_deadline(findings: Run) -> None:
    body = "\tctx, cancel := context.WithTimeout(r.Context(), 500*time.Millisecond)\n\tdefer cancel()\n\ta.db.PingContext(ctx)"
    assert findings(health_src(body), "SRV005") == []


def test_srv005_io_in_helper_is_followed(findings: Run) -> None:
    src = health_src("\ta.check()") + "\nfunc (a *App) check() error { return a.db.Ping() }\n"
    found = findings(src, "SRV005")
    assert len(found) == 1 and "a.db.Ping" in found[0].message


def test_srv005_not_a_health_path(findings: Run) -> None:
    src = health_src("\ta.db.PingContext(r.Context())").replace('"/healthz"', '"/orders"')
    assert findings(src, "SRV005") == []


# --- SRV006 ---------------------------------------------------------------------------------


def test_srv006_keep_alives_disabled_at_start(findings: Run) -> None:
    tail = "\tsrv.SetKeepAlivesEnabled(false)\n" + SHUTDOWN_TAIL
    found = findings(server("\t\tReadHeaderTimeout: time.Second,\n", tail=tail), "SRV006")
    assert len(found) == 1 and "SetKeepAlivesEnabled(false)" in found[0].message


def test_srv006_disabled_while_shutting_down_is_fine(findings: Run) -> None:
    tail = SHUTDOWN_TAIL.replace(
        "\tsrv.Shutdown(sctx)", "\tsrv.SetKeepAlivesEnabled(false)\n\tsrv.Shutdown(sctx)"
    )
    assert findings(server("\t\tReadHeaderTimeout: time.Second,\n", tail=tail), "SRV006") == []


def test_srv006_connection_close_header(findings: Run) -> None:
    src = server(
        "\t\tReadHeaderTimeout: time.Second,\n",
        body='\tmux.HandleFunc("/api", func(w http.ResponseWriter, r *http.Request) {\n'
        '\t\tw.Header().Set("Connection", "close")\n\t\tw.Write(nil)\n\t})\n',
    )
    found = findings(src, "SRV006")
    assert len(found) == 1 and '"Connection: close"' in found[0].message and "/api" in found[0].message


# --- SRV007 ---------------------------------------------------------------------------------

LOCKED = """
type Store struct {
	mu   sync.Mutex
	data map[string]string
}

func (s *Store) ready(w http.ResponseWriter, r *http.Request) {
	s.mu.%s()
	defer s.mu.%s()
	w.WriteHeader(200)
}

func (s *Store) put(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data[r.URL.Path] = "x"
}
"""


def locked_src(lock: str, unlock: str) -> str:
    body = '\ts := &Store{}\n\tmux.HandleFunc("/readyz", s.ready)\n\tmux.HandleFunc("POST /put", s.put)\n'
    return server("\t\tReadHeaderTimeout: time.Second,\n", body=body) + LOCKED % (lock, unlock)


def test_srv007_health_takes_request_lock(findings: Run) -> None:
    found = findings(locked_src("Lock", "Unlock"), "SRV007")
    assert len(found) == 1
    assert "locks s.mu" in found[0].message and "main.Store.put" in found[0].message


def test_srv007_health_without_lock(findings: Run) -> None:
    src = locked_src("Lock", "Unlock").replace(
        "\ts.mu.Lock()\n\tdefer s.mu.Unlock()\n\tw.WriteHeader(200)", "\tw.WriteHeader(200)"
    )
    assert findings(src, "SRV007") == []


def test_srv006_disabled_in_a_close_method_is_fine(findings: Run) -> None:
    src = """
type App struct{ srv *http.Server }

func (a *App) Close() {
	a.srv.SetKeepAlivesEnabled(false)
}

func main() {
	a := &App{srv: &http.Server{Addr: ":8080", ReadHeaderTimeout: time.Second}}
	a.srv.ListenAndServe()
}
"""
    assert findings(src, "SRV006") == []
    assert len(findings(src.replace("Close()", "Init()"), "SRV006")) == 1


ISTIO_MANIFESTS = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: api}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata:
      labels: {app: api, sidecar.istio.io/inject: "true"}
    spec:
      containers:
      - name: app
        image: api:1
        ports: [{containerPort: 8080}]
"""


def test_srv002_idle_shorter_than_istio_sidecar(findings: Run) -> None:
    src = server("\t\tReadHeaderTimeout: 5 * time.Second,\n\t\tIdleTimeout: 90 * time.Second,\n")
    found = findings(src, "SRV002", manifests=ISTIO_MANIFESTS)
    assert len(found) == 1
    assert "Istio sidecar (Envoy)" in found[0].message and "Deployment/api" in found[0].message
    assert "3600s" in found[0].message


def test_srv002_no_sidecar_injection(findings: Run) -> None:
    src = server("\t\tReadHeaderTimeout: 5 * time.Second,\n\t\tIdleTimeout: 90 * time.Second,\n")
    assert findings(src, "SRV002", manifests=ISTIO_MANIFESTS.replace('"true"', '"false"')) == []


GIN = """package main

import "github.com/gin-gonic/gin"

func main() {
	r := gin.Default()
	r.GET("/healthz", func(c *gin.Context) { c.String(200, "ok") })
	r.Run(%s)
}
"""

ECHO = """package main

import (
	"time"

	"github.com/labstack/echo/v4"
)

func main() {
	e := echo.New()
%s	e.Start(":1323")
}
"""


def test_gin_run_serves_with_the_package_defaults(findings: Run) -> None:
    found = findings(GIN % "", "SRV001")
    assert len(found) == 1
    assert 'r.Run(":8080") (gin.Engine.Run calls http.ListenAndServe)' in found[0].message
    assert len(findings(GIN % '":9000"', "SRV004")) == 1


def test_gin_engine_served_by_an_http_server_is_not_run(findings: Run) -> None:
    src = (GIN % "").replace("\tr.Run()\n", "\t_ = r\n")
    assert findings(src, "SRV001") == []


def test_echo_start_zero_server(findings: Run) -> None:
    found = findings(ECHO % "", "SRV001")
    assert len(found) == 1 and "http.Server e.Server" in found[0].message


def test_echo_start_with_header_timeout(findings: Run) -> None:
    assert findings(ECHO % "\te.Server.ReadHeaderTimeout = 5 * time.Second\n", "SRV001") == []


def test_srv003_stream_that_moves_its_write_deadline(findings: Run) -> None:
    stream = STREAM.replace(
        "\trc := http.NewResponseController(w)\n",
        "\trc := http.NewResponseController(w)\n\trc.SetWriteDeadline(time.Time{})\n",
    )
    src = (
        server("\t\tWriteTimeout: 10 * time.Second,\n", body='\tmux.HandleFunc("GET /events", events)\n')
        + stream
    )
    assert findings(src, "SRV003") == []


MULTI = {
    "go.mod": "module example.com/svc\n",
    "internal/server/server.go": """package server

import (
	"net/http"
	"time"
)

func New(h http.Handler) *http.Server {
	return &http.Server{Addr: ":8080", Handler: h, ReadHeaderTimeout: time.Second, WriteTimeout: time.Minute}
}
""",
    "internal/api/routes.go": """package api

import (
	"fmt"
	"net/http"
)

func Routes() http.Handler {
	r := http.NewServeMux()
	r.HandleFunc("GET /events", func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for {
			fmt.Fprint(w, "data: x\\n\\n")
			w.(http.Flusher).Flush()
		}
	})
	return r
}
""",
    "cmd/api/main.go": """package main

import (
	"example.com/svc/internal/api"
	"example.com/svc/internal/server"
)

func main() {
	srv := server.New(api.Routes())
	srv.ListenAndServe()
}
""",
}


def test_srv003_the_only_server_built_in_another_package(findings: Run) -> None:
    found = findings(MULTI, "SRV003")
    assert len(found) == 1 and "WriteTimeout 1m0s" in found[0].message and "GET /events" in found[0].message


def test_srv003_not_linked_when_two_servers(findings: Run) -> None:
    files = dict(MULTI)
    files["cmd/admin/main.go"] = """package main

import (
	"net/http"
	"time"
)

func main() {
	admin := &http.Server{Addr: ":9090", Handler: http.NewServeMux(), ReadHeaderTimeout: time.Second}
	admin.ListenAndServe()
}
"""
    assert findings(files, "SRV003") == []


# --- SRV005: the request's context and the client's Timeout reach client.Do -----------------

HTTP_HEALTH = """
var client = &http.Client{Timeout: %(client_timeout)s}

func healthz(w http.ResponseWriter, r *http.Request) {
%(body)s
	resp, err := client.Do(%(arg)s)
	if err != nil {
		w.WriteHeader(503)
		return
	}
	resp.Body.Close()
	w.WriteHeader(200)
}
"""
CTX_500MS = "\tctx, cancel := context.WithTimeout(r.Context(), 500*time.Millisecond)\n\tdefer cancel()\n"
NEW_REQ = '\treq, _ := http.NewRequest("GET", "http://deps:8080/ping", nil)\n'
NEW_REQ_CTX = '\treq, _ := http.NewRequestWithContext(%s, "GET", "http://deps:8080/ping", nil)\n'


def http_health(body: str, arg: str = "req", client_timeout: str = "5 * time.Second") -> str:
    return server(
        "\t\tReadHeaderTimeout: time.Second,\n", body='\tmux.HandleFunc("/healthz", healthz)\n'
    ) + HTTP_HEALTH % {"body": body, "arg": arg, "client_timeout": client_timeout}


@pytest.mark.parametrize(
    ("body", "arg"),
    [
        (CTX_500MS + NEW_REQ_CTX % "ctx", "req"),  # http.NewRequestWithContext(ctx, ...)
        (CTX_500MS + NEW_REQ + "\treq = req.WithContext(ctx)\n", "req"),  # req = req.WithContext(ctx)
        (CTX_500MS + NEW_REQ, "req.WithContext(ctx)"),  # client.Do(req.WithContext(ctx))
        # a WithCancel between the deadline and the request keeps the deadline
        (
            CTX_500MS + "\tcctx, stop := context.WithCancel(ctx)\n\tdefer stop()\n" + NEW_REQ_CTX % "cctx",
            "req",
        ),
    ],
    ids=["NewRequestWithContext", "req=req.WithContext", "Do(req.WithContext)", "WithCancel-child"],
)
def test_srv005_request_context_deadline_reaches_do(findings: Run, body: str, arg: str) -> None:
    # the client's 5s Timeout is longer than the probe's 1s, but the 500ms context fires first
    assert findings(http_health(body, arg), "SRV005") == []


def test_srv005_client_timeout_longer_than_probe_without_context(findings: Run) -> None:
    (found,) = findings(http_health(NEW_REQ), "SRV005")
    assert "client.Do waits up to 5s (client Timeout 5s)" in found.message
    assert "not shorter than the probe's default timeoutSeconds 1s" in found.message
    assert found.location is not None and found.location.line == line_of(found, "client.Do(")


def test_srv005_client_timeout_shorter_than_probe(findings: Run) -> None:
    assert findings(http_health(NEW_REQ, client_timeout="800 * time.Millisecond"), "SRV005") == []


def test_srv005_context_deadline_longer_than_probe_wins_over_none(findings: Run) -> None:
    body = NEW_REQ_CTX % "ctx"
    body = "\tctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)\n\tdefer cancel()\n" + body
    (found,) = findings(http_health(body, client_timeout="0"), "SRV005")
    assert "waits up to 2s (context.WithTimeout 2s)" in found.message


@pytest.mark.parametrize(
    ("ctx", "why"),
    [("r.Context()", "r.Context(), which has no deadline"), ("context.Background()", "context.Background()")],
)
def test_srv005_request_context_without_deadline(findings: Run, ctx: str, why: str) -> None:
    (found,) = findings(http_health(NEW_REQ_CTX % ctx, client_timeout="0"), "SRV005")
    assert "client.Do waits without limit" in found.message and why in found.message


def test_srv005_do_on_any_client_name_with_a_built_request(findings: Run) -> None:
    # `deps.Do(req)`: the receiver's name says nothing, the request built by http.NewRequest does
    src = http_health(NEW_REQ, client_timeout="0").replace("client", "deps")
    (found,) = findings(src, "SRV005")
    assert "deps.Do waits without limit" in found.message
    assert findings(src.replace("Timeout: 0", "Timeout: 300 * time.Millisecond"), "SRV005") == []
