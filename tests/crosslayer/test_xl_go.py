"""XL001–XL007 and the container ↔ Go server matching, on small repositories written to tmp_path.

Each case writes Go source and manifests the way a service repository holds them (Go main package
at the root or under cmd/, manifests under deploy/), runs the real Go and manifest sources, and
runs one rule. Every rule has a case that must trigger it and a close one that must not.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tcpdoctor.config import load_config
from tcpdoctor.model import Finding
from tcpdoctor.rules._matching import explain
from tcpdoctor.rules.registry import EvidenceBag, get_rule
from tcpdoctor.sources import golang
from tcpdoctor.sources import manifests as manifest_source

SERVER = """package main

import (
\t"context"
\t"database/sql"
\t"fmt"
\t"net/http"
\t"os"
\t"os/signal"
\t"syscall"
\t"time"
)

var db *sql.DB

func events(w http.ResponseWriter, r *http.Request) {
\tw.Header().Set("Content-Type", "text/event-stream")
\tflusher := w.(http.Flusher)
\tfor {
\t\tselect {
\t\tcase <-r.Context().Done():
\t\t\treturn
\t\tcase <-time.After(time.Second):
\t\t}
\t\tif _, err := fmt.Fprintf(w, "data: tick\\n\\n"); err != nil {
\t\t\treturn
\t\t}
\t\tflusher.Flush()
\t}
}

func healthz(w http.ResponseWriter, r *http.Request) {
\tw.WriteHeader(http.StatusOK)
}

func readyz(w http.ResponseWriter, r *http.Request) {
\tctx, cancel := context.WithTimeout(r.Context(), {ready_timeout})
\tdefer cancel()
\tif err := db.PingContext(ctx); err != nil {
\t\thttp.Error(w, err.Error(), http.StatusServiceUnavailable)
\t\treturn
\t}
\tw.WriteHeader(http.StatusOK)
}

func main() {
\tmux := http.NewServeMux()
\tmux.HandleFunc("GET /events", events)
\tmux.HandleFunc("GET /healthz", healthz)
\tmux.HandleFunc("GET /readyz", readyz)
\tsrv := &http.Server{Addr: {addr}, Handler: mux, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: {idle}}
\tgo srv.ListenAndServe()

\tctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
\tdefer stop()
\t<-ctx.Done()
\t{before_shutdown}
\tsctx, cancel := context.WithTimeout(context.Background(), {shutdown})
\tdefer cancel()
\tsrv.Shutdown(sctx)
\t_ = os.Getenv
}
"""

DEPLOYMENT = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      terminationGracePeriodSeconds: {grace}
      containers:
        - name: app
          image: example/{name}:1
          ports:
            - name: http
              containerPort: {port}
{extra}
---
apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  selector: {{app: {name}}}
  ports:
    - port: 80
      targetPort: http
"""


def server_go(**kw: str) -> str:
    values = {
        "ready_timeout": "500*time.Millisecond",
        "addr": '":8080"',
        "idle": "60 * time.Second",
        "before_shutdown": "",
        "shutdown": "10*time.Second",
    }
    values.update(kw)
    out = SERVER
    for key, value in values.items():
        out = out.replace("{" + key + "}", value)
    return out


def probe(kind: str, path: str, timeout: int = 1, port: str = "http") -> str:
    return textwrap.indent(
        f"{kind}Probe:\n  httpGet:\n    path: {path}\n    port: {port}\n  timeoutSeconds: {timeout}\n",
        " " * 10,
    )


def deployment(
    name: str = "api", *, port: int = 8080, grace: int = 30, probes: str = "", pre_stop: str = ""
) -> str:
    return DEPLOYMENT.format(name=name, port=port, grace=grace, extra=(probes + pre_stop).rstrip("\n"))


PRE_STOP_SLEEP = textwrap.indent("lifecycle:\n  preStop:\n    sleep:\n      seconds: 5\n", " " * 10)


def bag_for(root: Path, files: dict[str, str], toml: str | None = None) -> EvidenceBag:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    bag = EvidenceBag()
    bag.add("go", golang.analyse_files(sorted(root.rglob("*.go")), roots=[root]))
    yamls = sorted(root.rglob("*.yaml"))
    if yamls:
        bag.add("manifests", manifest_source.collect(yamls))
    if toml is not None:
        (root / ".tcpdoctor.toml").write_text(toml)
        bag.add("config", load_config(root / ".tcpdoctor.toml"))
    return bag


def run(bag: EvidenceBag, rule_id: str) -> list[Finding]:
    found = get_rule(rule_id)
    assert found is not None
    if not all(bag.has(k) for k in found.needs):
        return []
    return list(found(bag))


@pytest.fixture
def repo(tmp_path: Path):  # type: ignore[no-untyped-def]
    counter = iter(range(1000))

    def make(files: dict[str, str], toml: str | None = None) -> EvidenceBag:
        return bag_for(tmp_path / f"repo{next(counter)}", files, toml)

    return make


# --- matching -------------------------------------------------------------------------------------


def test_matching_by_port(repo) -> None:  # type: ignore[no-untyped-def]
    bag = repo({"main.go": server_go(), "deploy/api.yaml": deployment(probes=probe("readiness", "/events"))})
    lines = explain(bag)
    assert any(line.startswith("Deployment/api container app runs Go server srv") for line in lines), lines
    assert len(run(bag, "XL001")) == 1


def test_no_match_no_finding_and_a_verbose_reason(repo) -> None:  # type: ignore[no-untyped-def]
    bag = repo(
        {
            "main.go": server_go(),
            "deploy/api.yaml": deployment(port=9000, probes=probe("readiness", "/events")),
        }
    )
    assert run(bag, "XL001") == []
    lines = explain(bag)
    assert any("no Go server matched Deployment/api container app" in line for line in lines), lines
    assert any("container ports 9000" in line and "listen on 8080" in line for line in lines), lines


def test_two_servers_on_the_same_port_are_told_apart_by_layout(repo) -> None:  # type: ignore[no-untyped-def]
    worker = server_go().replace('mux.HandleFunc("GET /events", events)', "")
    bag = repo(
        {
            "cmd/api/main.go": server_go(),
            "cmd/worker/main.go": worker,
            "deploy/api.yaml": deployment(probes=probe("readiness", "/events")),
        }
    )
    got = run(bag, "XL001")
    assert len(got) == 1
    assert "cmd/api/main.go" in got[0].evidence[1].detail


def test_ambiguous_servers_are_not_guessed(repo) -> None:  # type: ignore[no-untyped-def]
    bag = repo(
        {
            "cmd/one/main.go": server_go(),
            "cmd/two/main.go": server_go(),
            "deploy/api.yaml": deployment(probes=probe("readiness", "/events")),
        }
    )
    assert run(bag, "XL001") == []
    assert any("2 servers listen on port 8080" in line for line in explain(bag))


def test_match_table_covers_a_runtime_port(repo) -> None:  # type: ignore[no-untyped-def]
    files = {
        "services/feed/main.go": server_go(addr='os.Getenv("ADDR")'),
        "deploy/api.yaml": deployment(probes=probe("readiness", "/events")),
    }
    assert run(repo(files), "XL001") == []
    toml = '[[match]]\nworkload = "Deployment/api"\ncontainer = "app"\ngo = "services/feed"\n'
    got = run(repo(files, toml), "XL001")
    assert len(got) == 1
    assert "[[match]]" in got[0].evidence[1].detail


# --- XL001 ----------------------------------------------------------------------------------------


def test_xl001_readiness_on_the_stream(repo) -> None:  # type: ignore[no-untyped-def]
    got = run(
        repo({"main.go": server_go(), "deploy/a.yaml": deployment(probes=probe("readiness", "/events"))}),
        "XL001",
    )
    assert len(got) == 1
    f = got[0]
    assert "readinessProbe GET :8080/events" in f.message and "timeoutSeconds 1" in f.message
    assert f.location is not None and f.location.path.endswith("a.yaml")
    assert f.subject.container == "app"


def test_xl001_not_on_a_plain_handler(repo) -> None:  # type: ignore[no-untyped-def]
    bag = repo({"main.go": server_go(), "deploy/a.yaml": deployment(probes=probe("readiness", "/healthz"))})
    assert run(bag, "XL001") == []


# --- XL002 ----------------------------------------------------------------------------------------


def test_xl002_liveness_on_the_dependency_check(repo) -> None:  # type: ignore[no-untyped-def]
    got = run(
        repo({"main.go": server_go(), "deploy/a.yaml": deployment(probes=probe("liveness", "/readyz"))}),
        "XL002",
    )
    assert len(got) == 1 and "PingContext" in got[0].message


def test_xl002_readiness_on_the_dependency_check_is_right(repo) -> None:  # type: ignore[no-untyped-def]
    bag = repo(
        {
            "main.go": server_go(),
            "deploy/a.yaml": deployment(probes=probe("readiness", "/readyz") + probe("liveness", "/healthz")),
        }
    )
    assert run(bag, "XL002") == []


# --- XL003 ----------------------------------------------------------------------------------------


def test_xl003_handler_waits_longer_than_the_probe(repo) -> None:  # type: ignore[no-untyped-def]
    files = {
        "main.go": server_go(ready_timeout="5 * time.Second"),
        "deploy/a.yaml": deployment(probes=probe("readiness", "/readyz", timeout=1)),
    }
    got = run(repo(files), "XL003")
    assert len(got) == 1 and "timeoutSeconds 1" in got[0].message and "5s" in got[0].message


def test_xl003_handler_deadline_inside_the_probe_timeout(repo) -> None:  # type: ignore[no-untyped-def]
    files = {
        "main.go": server_go(ready_timeout="5 * time.Second"),
        "deploy/a.yaml": deployment(probes=probe("readiness", "/readyz", timeout=6)),
    }
    assert run(repo(files), "XL003") == []


# --- XL004 ----------------------------------------------------------------------------------------


def test_xl004_grace_shorter_than_shutdown(repo) -> None:  # type: ignore[no-untyped-def]
    files = {
        "main.go": server_go(shutdown="30 * time.Second"),
        "deploy/a.yaml": deployment(grace=10, pre_stop=PRE_STOP_SLEEP),
    }
    got = run(repo(files), "XL004")
    assert len(got) == 1
    assert "terminationGracePeriodSeconds is 10" in got[0].message and "35s" in got[0].message


def test_xl004_grace_covers_prestop_and_shutdown(repo) -> None:  # type: ignore[no-untyped-def]
    files = {
        "main.go": server_go(shutdown="30 * time.Second"),
        "deploy/a.yaml": deployment(grace=40, pre_stop=PRE_STOP_SLEEP),
    }
    assert run(repo(files), "XL004") == []


# --- XL005 ----------------------------------------------------------------------------------------


def test_xl005_no_prestop_and_immediate_shutdown(repo) -> None:  # type: ignore[no-untyped-def]
    got = run(repo({"main.go": server_go(), "deploy/a.yaml": deployment()}), "XL005")
    assert len(got) == 1 and "no preStop delay" in got[0].message and "Service api" in got[0].message


def test_xl005_prestop_sleep(repo) -> None:  # type: ignore[no-untyped-def]
    assert (
        run(repo({"main.go": server_go(), "deploy/a.yaml": deployment(pre_stop=PRE_STOP_SLEEP)}), "XL005")
        == []
    )


def test_xl005_go_sleeps_before_shutdown(repo) -> None:  # type: ignore[no-untyped-def]
    files = {
        "main.go": server_go(before_shutdown="time.Sleep(5 * time.Second)"),
        "deploy/a.yaml": deployment(),
    }
    assert run(repo(files), "XL005") == []


# --- XL006 ----------------------------------------------------------------------------------------


CLIENT = """package main

import (
\t"io"
\t"net/http"
\t"time"
)

var upstream = flag.String("upstream", "{target}", "ingest host:port")

var client = &http.Client{
\tTimeout:   10 * time.Second,
\tTransport: &http.Transport{IdleConnTimeout: {idle}},
}

func main() {
\tresp, err := client.Post("http://" + *upstream + "/orders", "application/json", nil)
\tif err == nil {
\t\tio.Copy(io.Discard, resp.Body)
\t\tresp.Body.Close()
\t}
}
"""


def client_go(target: str, idle: str) -> str:
    return CLIENT.replace("{target}", target).replace("{idle}", idle).replace('"io"', '"flag"\n\t"io"')


def test_xl006_client_idle_longer_than_server_idle_through_a_service(repo) -> None:  # type: ignore[no-untyped-def]
    files = {
        "cmd/orders/main.go": server_go(idle="60 * time.Second"),
        "cmd/front/main.go": client_go("orders.default.svc:80", "5 * time.Minute"),
        "deploy/orders.yaml": deployment("orders"),
    }
    got = run(repo(files), "XL006")
    assert len(got) == 1
    f = got[0]
    assert "5m0s" in f.message and "1m0s" in f.message
    assert "Service default/orders port 80" in f.evidence[1].detail
    assert f.location is not None and f.location.path.endswith("cmd/front/main.go")


def test_xl006_says_the_fin_must_be_lost_or_in_flight(repo) -> None:  # type: ignore[no-untyped-def]
    # net/http drops a pooled connection when the server's FIN arrives (readLoopPeekFailLocked):
    # the message must not claim that every reuse fails, and must say what Go does with this POST
    files = {
        "cmd/orders/main.go": server_go(idle="60 * time.Second"),
        "cmd/front/main.go": client_go("orders.default.svc:80", "5 * time.Minute"),
        "deploy/orders.yaml": deployment("orders"),
    }
    (f,) = run(repo(files), "XL006")
    assert f.severity.name == "WARNING"
    assert "keeps idle connections for 5m0s, not less than the 1m0s after which the server" in f.message
    assert "drops a pooled connection as soon as the peer's FIN arrives" in f.message
    assert "while that FIN is in flight (the close race, PCP004)" in f.message
    assert "the FIN is lost or held on the path (NAT, load balancer, conntrack: PCP003)" in f.message
    assert "Go does not replay this POST" in f.message


def test_xl006_get_is_replayed_once(repo) -> None:  # type: ignore[no-untyped-def]
    get = client_go("orders.default.svc:80", "5 * time.Minute").replace(
        'client.Post("http://" + *upstream + "/orders", "application/json", nil)',
        'client.Get("http://" + *upstream + "/orders")',
    )
    files = {
        "cmd/orders/main.go": server_go(idle="60 * time.Second"),
        "cmd/front/main.go": get,
        "deploy/orders.yaml": deployment("orders"),
    }
    (f,) = run(repo(files), "XL006")
    assert "this GET is replayed once on a new connection" in f.message


def test_xl006_client_idle_shorter_than_server_idle(repo) -> None:  # type: ignore[no-untyped-def]
    files = {
        "cmd/orders/main.go": server_go(idle="60 * time.Second"),
        "cmd/front/main.go": client_go("orders.default.svc:80", "30 * time.Second"),
        "deploy/orders.yaml": deployment("orders"),
    }
    assert run(repo(files), "XL006") == []


def test_xl006_go_only_by_localhost_port(repo) -> None:  # type: ignore[no-untyped-def]
    files = {
        "cmd/orders/main.go": server_go(idle="60 * time.Second"),
        "cmd/front/main.go": client_go("localhost:8080", "0"),
    }
    got = run(repo(files), "XL006")
    assert len(got) == 1 and "no limit" in got[0].message


def test_xl006_unknown_server_is_not_guessed(repo) -> None:  # type: ignore[no-untyped-def]
    files = {
        "cmd/orders/main.go": server_go(idle="60 * time.Second"),
        "cmd/front/main.go": client_go("payments.default.svc:80", "5 * time.Minute"),
        "deploy/orders.yaml": deployment("orders"),
    }
    assert run(repo(files), "XL006") == []


# --- XL007 ----------------------------------------------------------------------------------------


def test_xl007_probe_path_not_registered(repo) -> None:  # type: ignore[no-untyped-def]
    got = run(
        repo({"main.go": server_go(), "deploy/a.yaml": deployment(probes=probe("liveness", "/health"))}),
        "XL007",
    )
    assert len(got) == 1
    assert "/health" in got[0].message and "/healthz" in got[0].message


def test_xl007_registered_path(repo) -> None:  # type: ignore[no-untyped-def]
    bag = repo({"main.go": server_go(), "deploy/a.yaml": deployment(probes=probe("liveness", "/healthz"))})
    assert run(bag, "XL007") == []


# --- through the command line -----------------------------------------------------------------------


def test_scan_verbose_says_which_container_was_not_matched(tmp_path: Path) -> None:
    import subprocess
    import sys

    root = tmp_path / "svc"
    bag_for(
        root,
        {
            "main.go": server_go(),
            "deploy/api.yaml": deployment(port=9000, probes=probe("readiness", "/events")),
        },
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tcpdoctor.cli",
            "scan",
            str(root),
            "-v",
            "--select",
            "XL",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "no Go server matched Deployment/api container app" in proc.stderr
    assert '"findings": []' in proc.stdout


def test_scan_reports_xl_findings_with_a_match_table(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    root = tmp_path / "svc"
    bag_for(
        root,
        {
            "services/feed/main.go": server_go(addr='os.Getenv("ADDR")'),
            "deploy/api.yaml": deployment(probes=probe("readiness", "/events")),
        },
        toml='[[match]]\nworkload = "Deployment/api"\ngo = "services/feed"\n',
    )
    proc = subprocess.run(
        [sys.executable, "-m", "tcpdoctor.cli", "scan", str(root), "--select", "XL001", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert [f["rule"] for f in report["findings"]] == ["XL001"]
    assert report["findings"][0]["location"]["path"].endswith("deploy/api.yaml")


# --- several servers in one program -----------------------------------------------------------------


ADMIN = """
func admin() {
\tadminMux := http.NewServeMux()
\tadminMux.HandleFunc("/livez", healthz)
\tadminSrv := &http.Server{Addr: ":8081", Handler: adminMux, ReadHeaderTimeout: time.Second}
\tadminSrv.ListenAndServe()
}
"""

ADMIN_PORT = """            - name: admin
              containerPort: 8081
"""


def with_admin(probes: str) -> str:
    return deployment(probes=probes).replace(
        "              containerPort: 8080\n", "              containerPort: 8080\n" + ADMIN_PORT
    )


def test_each_port_is_matched_to_its_own_server(repo) -> None:  # type: ignore[no-untyped-def]
    # /events exists on the main mux (8080) but not on the admin mux (8081) the probe asks
    bag = repo(
        {
            "main.go": server_go() + ADMIN,
            "deploy/a.yaml": with_admin(probe("liveness", "/events", port="admin")),
        }
    )
    got = run(bag, "XL007")
    assert len(got) == 1 and "/livez" in got[0].message
    assert run(bag, "XL001") == [], "the stream is on the other server"
    lines = explain(bag)
    assert sum("Deployment/api container app runs Go server" in line for line in lines) == 2, lines


def test_admin_port_probe_on_a_registered_path(repo) -> None:  # type: ignore[no-untyped-def]
    bag = repo(
        {
            "main.go": server_go() + ADMIN,
            "deploy/a.yaml": with_admin(probe("liveness", "/livez", port="admin")),
        }
    )
    assert run(bag, "XL007") == []


def test_ports_served_by_two_programs_keep_the_one_the_layout_names(repo) -> None:  # type: ignore[no-untyped-def]
    other = server_go(addr='":8081"').replace('mux.HandleFunc("GET /events", events)', "")
    bag = repo(
        {
            "cmd/api/main.go": server_go(),
            "cmd/metrics/main.go": other,
            "deploy/a.yaml": with_admin(probe("readiness", "/events")),
        }
    )
    lines = explain(bag)
    assert [line for line in lines if "runs Go server" in line] and all(
        "cmd/api/main.go" in line for line in lines if "runs Go server" in line
    ), lines
    assert len(run(bag, "XL001")) == 1


def test_xl003_client_timeout_of_a_package_client_used_by_the_handler(repo) -> None:  # type: ignore[no-untyped-def]
    src = server_go().replace(
        "\tif err := db.PingContext(ctx); err != nil {",
        '\tif resp, err := deps.Get("http://deps:8080/ping"); err == nil {\n\t\tresp.Body.Close()\n\t}\n'
        "\tif err := db.PingContext(ctx); err != nil {",
    )
    src = src.replace("var db *sql.DB", "var db *sql.DB\n\nvar deps = &http.Client{Timeout: %s}")
    files = {"deploy/a.yaml": deployment(probes=probe("readiness", "/readyz", timeout=2))}
    got = run(repo({**files, "main.go": src % "10 * time.Second"}), "XL003")
    assert len(got) == 1 and "deps.Get with client Timeout 10 * time.Second" in got[0].message
    assert run(repo({**files, "main.go": src % "time.Second"}), "XL003") == []


def test_xl006_target_from_a_url_constant_of_the_package(repo) -> None:  # type: ignore[no-untyped-def]
    front = """package main

import (
\t"io"
\t"net/http"
\t"time"
)

const ordersURL = "http://orders.default.svc/orders"

type api struct {
\tbase   string
\tclient *http.Client
}

func newAPI() *api {
\treturn &api{base: ordersURL, client: &http.Client{Timeout: time.Second, Transport: &http.Transport{IdleConnTimeout: 2 * time.Minute}}}
}

func (a *api) place() error {
\tresp, err := a.client.Post(a.base, "application/json", nil)
\tif err != nil {
\t\treturn err
\t}
\tio.Copy(io.Discard, resp.Body)
\treturn resp.Body.Close()
}
"""
    files = {
        "cmd/orders/main.go": server_go(idle="60 * time.Second"),
        "cmd/front/main.go": front,
        "deploy/orders.yaml": deployment("orders"),
    }
    got = run(repo(files), "XL006")
    assert len(got) == 1 and "2m0s" in got[0].message
    assert "http://orders.default.svc/orders -> Service default/orders port 80" in got[0].evidence[1].detail


def _readyz_calling_deps(build: str) -> str:
    """readyz bounded by its 500ms context, then an HTTP check through a client with a 5s Timeout."""
    src = server_go().replace(
        "\tif err := db.PingContext(ctx); err != nil {",
        build + "\tif resp, err := deps.Do(req); err == nil {\n\t\tresp.Body.Close()\n\t}\n"
        "\tif err := db.PingContext(ctx); err != nil {",
    )
    return src.replace(
        "var db *sql.DB", "var db *sql.DB\n\nvar deps = &http.Client{Timeout: 5 * time.Second}"
    )


def test_xl003_request_context_shorter_than_client_timeout(repo) -> None:  # type: ignore[no-untyped-def]
    # the 500ms context reaches deps.Do through the request: the 5s client Timeout never fires first
    build = '\treq, _ := http.NewRequestWithContext(ctx, "GET", "http://deps:8080/ping", nil)\n'
    files = {"deploy/a.yaml": deployment(probes=probe("readiness", "/readyz", timeout=1))}
    assert run(repo({**files, "main.go": _readyz_calling_deps(build)}), "XL003") == []


def test_xl003_client_timeout_when_the_request_has_no_context(repo) -> None:  # type: ignore[no-untyped-def]
    build = '\treq, _ := http.NewRequest("GET", "http://deps:8080/ping", nil)\n'
    files = {"deploy/a.yaml": deployment(probes=probe("readiness", "/readyz", timeout=1))}
    (got,) = run(repo({**files, "main.go": _readyz_calling_deps(build)}), "XL003")
    assert (
        "timeoutSeconds 1" in got.message
        and "waits up to 5s (deps.Do until its client Timeout 5s)" in got.message
    )
