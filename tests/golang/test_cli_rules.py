"""CLI001–CLI007 on small Go programs: each rule has a case that must trigger and a close one that must not."""

from __future__ import annotations

from collections.abc import Callable

from tcpdoctor.model import Finding, Severity

Run = Callable[..., list[Finding]]


# --- CLI001 request without deadline --------------------------------------------------------------


def test_cli001_http_get_in_handler_has_no_deadline(findings: Run) -> None:
    got = findings(
        """
        func ready(w http.ResponseWriter, r *http.Request) {
            resp, err := http.Get("http://deps.default.svc:8080/healthz")
            if err != nil {
                return
            }
            defer resp.Body.Close()
        }
        """,
        "CLI001",
    )
    assert len(got) == 1
    assert "http.DefaultClient has no Timeout" in got[0].message
    assert "while serving a request" in got[0].message
    assert got[0].location is not None and got[0].location.line is not None


def test_cli001_client_timeout_bounds_the_request(findings: Run) -> None:
    src = """
        var client = &http.Client{Timeout: %s}

        func fetch() error {
            resp, err := client.Get("http://api:8080/x")
            if err != nil {
                return err
            }
            return resp.Body.Close()
        }
        """
    assert findings(src % "5 * time.Second", "CLI001") == []
    unbounded = findings(src % "0", "CLI001")
    assert len(unbounded) == 1 and "Timeout unset" in unbounded[0].message


def test_cli001_context_deadline_bounds_a_default_client_request(findings: Run) -> None:
    src = """
        func fetch() error {
            ctx, cancel := %s
            defer cancel()
            req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://api:8080/x", nil)
            resp, err := http.DefaultClient.Do(req)
            if err != nil {
                return err
            }
            return resp.Body.Close()
        }
        """
    assert findings(src % "context.WithTimeout(context.Background(), 2*time.Second)", "CLI001") == []
    got = findings(src % "context.WithCancel(context.Background())", "CLI001")
    assert len(got) == 1 and "context.Background()" in got[0].message


def test_cli001_a_caller_context_is_not_guessed(findings: Run) -> None:
    got = findings(
        """
        func fetch(ctx context.Context) error {
            req, _ := http.NewRequestWithContext(ctx, "GET", "http://api:8080/x", nil)
            resp, err := http.DefaultClient.Do(req)
            if err != nil {
                return err
            }
            return resp.Body.Close()
        }
        """,
        "CLI001",
    )
    assert got == []


# --- CLI002 unbounded idle pool ------------------------------------------------------------------------


def test_cli002_new_transport_without_idle_timeout(findings: Run) -> None:
    src = """
        var client = &http.Client{
            Timeout:   5 * time.Second,
            Transport: &http.Transport{MaxIdleConnsPerHost: 16%s},
        }
        """
    got = findings(src % "", "CLI002")
    assert len(got) == 1
    assert "IdleConnTimeout is unset" in got[0].message
    # not "every reuse fails": the pool drops a connection whose FIN arrived (net/http readLoop)
    assert "a reuse fails only when a request is written while that FIN is in flight" in got[0].message
    assert "FIN is lost or held on the path" in got[0].message
    assert findings(src % ", IdleConnTimeout: 30 * time.Second", "CLI002") == []


def test_cli002_clone_of_default_transport_has_90s(findings: Run) -> None:
    got = findings(
        """
        var tr = http.DefaultTransport.(*http.Transport).Clone()
        """,
        "CLI002",
    )
    assert got == []


def test_cli002_idle_timeout_assigned_after_construction(findings: Run) -> None:
    got = findings(
        """
        func newTransport() *http.Transport {
            t := &http.Transport{}
            t.IdleConnTimeout = 45 * time.Second
            return t
        }
        """,
        "CLI002",
    )
    assert got == []


# --- CLI003 small idle pool used concurrently ------------------------------------------------------


CLI003_SRC = """
    var upstream = &http.Client{
        Timeout:   3 * time.Second,
        Transport: &http.Transport{IdleConnTimeout: 30 * time.Second%s},
    }

    func proxy(w http.ResponseWriter, r *http.Request) {
        resp, err := upstream.Get("http://backend:8080/data")
        if err != nil {
            return
        }
        defer resp.Body.Close()
    }
    """


def test_cli003_default_per_host_pool_in_a_handler(findings: Run) -> None:
    got = findings(CLI003_SRC % "", "CLI003")
    assert len(got) == 1
    assert got[0].severity is Severity.INFO
    assert "MaxIdleConnsPerHost is unset" in got[0].message


def test_cli003_sized_pool_is_fine(findings: Run) -> None:
    assert findings(CLI003_SRC % ", MaxIdleConnsPerHost: 64", "CLI003") == []


def test_cli003_not_concurrent_outside_handlers(findings: Run) -> None:
    src = CLI003_SRC.replace("func proxy(w http.ResponseWriter, r *http.Request) {", "func poll() {")
    assert findings(src % "", "CLI003") == []


# --- CLI004 transport per request -------------------------------------------------------------------


def test_cli004_transport_built_in_handler(findings: Run) -> None:
    got = findings(
        """
        func handler(w http.ResponseWriter, r *http.Request) {
            c := &http.Client{Timeout: time.Second, Transport: &http.Transport{IdleConnTimeout: time.Second}}
            resp, err := c.Get("http://backend:8080/")
            if err == nil {
                resp.Body.Close()
            }
        }
        """,
        "CLI004",
    )
    assert len(got) == 1 and "in an HTTP handler" in got[0].message


def test_cli004_transport_built_in_loop(findings: Run) -> None:
    got = findings(
        """
        func pollAll(urls []string) {
            for _, u := range urls {
                t := &http.Transport{IdleConnTimeout: time.Second}
                c := &http.Client{Transport: t, Timeout: time.Second}
                if resp, err := c.Get(u); err == nil {
                    resp.Body.Close()
                }
            }
        }
        """,
        "CLI004",
    )
    assert len(got) == 1 and "inside a loop" in got[0].message


def test_cli004_client_without_transport_in_handler_is_fine(findings: Run) -> None:
    got = findings(
        """
        func handler(w http.ResponseWriter, r *http.Request) {
            c := &http.Client{Timeout: time.Second}
            resp, err := c.Get("http://backend:8080/")
            if err == nil {
                resp.Body.Close()
            }
        }
        """,
        "CLI004",
    )
    assert got == []


# --- CLI005 response body ---------------------------------------------------------------------------


BODY_SRC = """
    var client = &http.Client{Timeout: time.Second}

    func status() int {
        resp, err := client.Get("http://api:8080/x")
        if err != nil {
            return 0
        }
        %s
        return resp.StatusCode
    }
    """


def test_cli005_body_never_closed(findings: Run) -> None:
    got = findings(BODY_SRC % "", "CLI005")
    assert len(got) == 1
    assert got[0].severity is Severity.WARNING and "never closed" in got[0].message


def test_cli005_closed_but_not_drained_is_info(findings: Run) -> None:
    got = findings(BODY_SRC % "defer resp.Body.Close()", "CLI005")
    assert len(got) == 1
    assert got[0].severity is Severity.INFO and "without being read to the end" in got[0].message


def test_cli005_drained_and_closed(findings: Run) -> None:
    src = (BODY_SRC % "defer resp.Body.Close()\n        io.Copy(io.Discard, resp.Body)").replace(
        "var client", "var _ = io.Discard\n    var client"
    )
    src = 'package main\n\nimport (\n\t"io"\n\t"net/http"\n\t"time"\n)\n' + src
    assert findings(src, "CLI005") == []


def test_cli005_response_handed_to_the_caller_is_not_judged(findings: Run) -> None:
    got = findings(
        """
        func fetch() (*http.Response, error) {
            resp, err := http.DefaultClient.Get("http://api:8080/x")
            if err != nil {
                return nil, err
            }
            return resp, nil
        }
        """,
        "CLI005",
    )
    assert got == []


# --- CLI006 pings on long-lived HTTP/2 and gRPC connections -----------------------------------------


GRPC_SRC = """package main

import (
\t"time"

\t"google.golang.org/grpc"
\t"google.golang.org/grpc/credentials/insecure"
\t"google.golang.org/grpc/keepalive"
)

var _ = time.Second

func dial() (*grpc.ClientConn, error) {
\treturn grpc.NewClient("dns:///orders.shop.svc.cluster.local:9000",
\t\tgrpc.WithTransportCredentials(insecure.NewCredentials())%s)
}
"""


def test_cli006_grpc_dial_without_keepalive(findings: Run) -> None:
    got = findings(GRPC_SRC % "", "CLI006")
    assert len(got) == 1
    assert "dns:///orders.shop.svc.cluster.local:9000" in got[0].message


def test_cli006_grpc_dial_with_keepalive(findings: Run) -> None:
    opts = ",\n\t\tgrpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second})"
    assert findings(GRPC_SRC % opts, "CLI006") == []


def test_cli006_http2_transport_without_read_idle_timeout(findings: Run) -> None:
    src = """package main

import (
\t"time"

\t"golang.org/x/net/http2"
)

var _ = time.Second

var h2 = &http2.Transport{AllowHTTP: true%s}
"""
    got = findings(src % "", "CLI006")
    assert len(got) == 1 and "(ReadIdleTimeout / SendPingTimeout) is unset" in got[0].message
    assert (
        findings(src % ", ReadIdleTimeout: 30 * time.Second, PingTimeout: 15 * time.Second", "CLI006") == []
    )


# --- CLI007 keep-alives disabled --------------------------------------------------------------------


def test_cli007_disable_keepalives(findings: Run) -> None:
    src = "var tr = &http.Transport{IdleConnTimeout: time.Minute, DisableKeepAlives: %s}\n"
    got = findings(src % "true", "CLI007")
    assert len(got) == 1 and "DisableKeepAlives true" in got[0].message
    assert findings(src % "false", "CLI007") == []


def test_cli007_negative_dialer_keepalive(findings: Run) -> None:
    src = """package main

import (
\t"net"
\t"net/http"
\t"time"
)

var _ = time.Second

var tr = &http.Transport{IdleConnTimeout: time.Minute, DialContext: d.DialContext}

var d = &net.Dialer{Timeout: 5 * time.Second, KeepAlive: %s}
"""
    got = findings(src % "-1", "CLI007")
    assert len(got) == 1 and "negative disables" in got[0].message
    assert findings(src % "0", "CLI007") == []
    assert findings(src % "30 * time.Second", "CLI007") == []


def test_cli001_context_attached_after_new_request(findings: Run) -> None:
    src = """
        var client = &http.Client{}

        func fetch() error {
            req, _ := http.NewRequest("GET", "http://api:8080/x", nil)
            ctx, cancel := %s
            defer cancel()
            req = req.WithContext(ctx)
            resp, err := client.Do(req)
            if err != nil {
                return err
            }
            return resp.Body.Close()
        }
        """
    assert findings(src % "context.WithTimeout(context.Background(), time.Second)", "CLI001") == []
    assert len(findings(src % "context.WithCancel(context.Background())", "CLI001")) == 1


def test_cli001_a_local_client_of_another_function_is_not_confused(findings: Run) -> None:
    got = findings(
        """
        func build() {
            client := &http.Client{Timeout: 0}
            _ = client
        }

        func fetch(client *http.Client) error {
            resp, err := client.Get("http://api:8080/x")
            if err != nil {
                return err
            }
            return resp.Body.Close()
        }
        """,
        "CLI001",
    )
    assert got == [], "fetch's client is a parameter: its Timeout is the caller's"


def test_cli006_http2_configure_transports_with_pings_assigned_later(findings: Run) -> None:
    src = """package main

import (
\t"net/http"
\t"time"

\t"golang.org/x/net/http2"
)

func newTransport() *http.Transport {
\tt1 := &http.Transport{IdleConnTimeout: time.Minute}
\tt2, err := http2.ConfigureTransports(t1)
\tif err != nil {
\t\tpanic(err)
\t}
\t%s
\treturn t1
}
"""
    assert len(findings(src % "_ = t2", "CLI006")) == 1
    assert findings(src % "t2.ReadIdleTimeout = 30 * time.Second", "CLI006") == []


def test_cli006_net_http_http2config(findings: Run) -> None:
    src = "var tr = &http.Transport{IdleConnTimeout: time.Minute, HTTP2: &http.HTTP2Config{%s}}\n"
    assert len(findings(src % "MaxConcurrentStreams: 100", "CLI006")) == 1
    assert findings(src % "SendPingTimeout: 30 * time.Second", "CLI006") == []


def test_cli001_default_client_through_a_variable(findings: Run) -> None:
    got = findings(
        """
        var api = http.DefaultClient

        func fetch() error {
            resp, err := api.Get("http://api:8080/x")
            if err != nil {
                return err
            }
            return resp.Body.Close()
        }
        """,
        "CLI001",
    )
    assert len(got) == 1 and "http.DefaultClient has no Timeout" in got[0].message


def test_cli005_read_but_not_closed_is_info(findings: Run) -> None:
    src = """package main

import (
\t"io"
\t"net/http"
\t"time"
)

var client = &http.Client{Timeout: time.Second}

func body() ([]byte, error) {
\tresp, err := client.Get("http://api:8080/x")
\tif err != nil {
\t\treturn nil, err
\t}
\treturn io.ReadAll(resp.Body)
}
"""
    got = findings(src, "CLI005")
    assert len(got) == 1
    assert got[0].severity is Severity.INFO and "read but never closed" in got[0].message


def test_cli001_response_header_timeout_is_a_partial_bound(findings: Run) -> None:
    got = findings(
        """
        var client = &http.Client{Transport: &http.Transport{ResponseHeaderTimeout: 5 * time.Second}}

        func fetch() error {
            resp, err := client.Get("http://api:8080/x")
            if err != nil {
                return err
            }
            return resp.Body.Close()
        }
        """,
        "CLI001",
    )
    assert len(got) == 1
    assert got[0].severity is Severity.INFO and "ResponseHeaderTimeout 5s" in got[0].message


def test_cli001_a_type_of_our_own_named_default_client_is_not_net_http(findings: Run) -> None:
    got = findings(
        """
        type api struct{}

        func (api) Get(url string) (*http.Response, error) { return nil, nil }

        var DefaultClient api

        func fetch() {
            resp, _ := DefaultClient.Get("http://api:8080/x")
            _ = resp
        }
        """,
        "CLI001",
    )
    assert got == []


def test_cli004_one_transport_per_configured_upstream_is_fine(findings: Run) -> None:
    got = findings(
        """
        var transports = map[string]*http.Transport{}

        func setup(upstreams []string) {
            for _, u := range upstreams {
                transports[u] = &http.Transport{IdleConnTimeout: 30 * time.Second}
            }
        }
        """,
        "CLI004",
    )
    assert got == []


def test_cli004_transport_built_once_inside_a_handler_is_fine(findings: Run) -> None:
    got = findings(
        """
        var once sync.Once
        var shared *http.Client

        func handler(w http.ResponseWriter, r *http.Request) {
            once.Do(func() {
                shared = &http.Client{Transport: &http.Transport{IdleConnTimeout: 30 * time.Second}}
            })
        }
        """,
        "CLI004",
    )
    assert got == []


def test_cli006_external_grpc_target_is_out_of_scope(findings: Run) -> None:
    target = "dns:///orders.shop.svc.cluster.local:9000"
    assert findings(GRPC_SRC.replace(target, "api.partner.example.com:443") % "", "CLI006") == []
    assert findings(GRPC_SRC.replace(target, "localhost:9000") % "", "CLI006") == []
    got = findings(GRPC_SRC.replace(target, "orders:9000") % "", "CLI006")
    assert len(got) == 1 and got[0].severity is Severity.WARNING
    unknown = findings(GRPC_SRC.replace('"' + target + '"', "addr") % "", "CLI006")
    assert (
        len(unknown) == 1
        and unknown[0].severity is Severity.INFO
        and "if addr is a Kubernetes" in unknown[0].message
    )
