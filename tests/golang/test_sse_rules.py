"""SSE001-SSE004: a case that must trigger each rule and a close one that must not."""

from __future__ import annotations

from collections.abc import Callable

from tcpdoctor.model import Finding

Run = Callable[..., list[Finding]]

MAIN = """
func main() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /events", events)
	srv := &http.Server{Addr: ":8080", Handler: mux, ReadHeaderTimeout: time.Second}
	srv.ListenAndServe()
}
"""

GOOD = """
func events(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	rc := http.NewResponseController(w)
	ticker := time.NewTicker(15 * time.Second)
	defer ticker.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-ticker.C:
			if _, err := fmt.Fprint(w, ": ping\\n\\n"); err != nil {
				return
			}
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}
"""


def test_good_stream_has_no_sse_findings(findings: Run) -> None:
    for rule in ("SSE001", "SSE002", "SSE003", "SSE004"):
        assert findings(MAIN + GOOD, rule) == [], rule


def test_sse001_writes_without_flush(findings: Run) -> None:
    src = MAIN + GOOD.replace("\t\tif err := rc.Flush(); err != nil {\n\t\t\treturn\n\t\t}\n", "")
    found = findings(src, "SSE001")
    assert len(found) == 1
    assert (
        "main.events (GET /events)" in found[0].message and "without ever calling Flush" in found[0].message
    )


def test_sse001_flusher_type_assertion_counts(findings: Run) -> None:
    src = (
        MAIN
        + GOOD.replace("rc.Flush()", "flush(w)")
        + ("\nfunc flush(w http.ResponseWriter) error { w.(http.Flusher).Flush(); return nil }\n")
    )
    # the flush is in a helper: the handler itself never flushes, so this is reported ...
    assert len(findings(src, "SSE001")) == 1
    # ... while the type assertion inline is a flush
    inline = MAIN + GOOD.replace("rc.Flush()", "flushed(w)").replace(
        "\t\tif err := flushed(w); err != nil {\n\t\t\treturn\n\t\t}\n", "\t\tw.(http.Flusher).Flush()\n"
    )
    assert findings(inline, "SSE001") == []


def test_sse002_loop_ignores_errors_and_context(findings: Run) -> None:
    src = MAIN + GOOD.replace("\t\tcase <-r.Context().Done():\n\t\t\treturn\n", "").replace(
        '\t\t\tif _, err := fmt.Fprint(w, ": ping\\n\\n"); err != nil {\n\t\t\t\treturn\n\t\t\t}\n',
        '\t\t\tfmt.Fprint(w, ": ping\\n\\n")\n',
    ).replace("\t\tif err := rc.Flush(); err != nil {\n\t\t\treturn\n\t\t}\n", "\t\trc.Flush()\n")
    found = findings(src, "SSE002")
    assert len(found) == 1
    assert "ignores the error of its write" in found[0].message


def test_sse002_checked_write_is_enough(findings: Run) -> None:
    src = MAIN + GOOD.replace("\t\tcase <-r.Context().Done():\n\t\t\treturn\n", "")
    assert findings(src, "SSE002") == []


def test_sse003_no_heartbeat(findings: Run) -> None:
    src = MAIN + GOOD.replace(
        "ticker := time.NewTicker(15 * time.Second)", "ticker := struct{ C chan int; Stop func() }{}"
    )
    found = findings(src, "SSE003")
    assert len(found) == 1 and "sends no heartbeat" in found[0].message and "60s" in found[0].message


def test_sse003_heartbeat_too_slow_for_nginx_annotation(findings: Run) -> None:
    manifests = """
apiVersion: v1
kind: Service
metadata: {name: feed}
spec:
  selector: {app: feed}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: feed
  annotations:
    nginx.ingress.kubernetes.io/proxy-read-timeout: "10"
spec:
  ingressClassName: nginx
  rules:
  - http:
      paths:
      - path: /
        pathType: Prefix
        backend: {service: {name: feed, port: {number: 80}}}
"""
    found = findings(MAIN + GOOD, "SSE003", manifests=manifests)
    assert len(found) == 1
    assert "beats only every 15s" in found[0].message and "10s" in found[0].message
    assert any(e.source == "manifest" for e in found[0].evidence)


def test_sse004_missing_headers(findings: Run) -> None:
    src = MAIN + GOOD.replace('\tw.Header().Set("X-Accel-Buffering", "no")\n', "")
    found = findings(src, "SSE004")
    assert len(found) == 1
    assert "X-Accel-Buffering: no" in found[0].message and "Cache-Control" not in found[0].message


def test_sse004_not_an_event_stream(findings: Run) -> None:
    src = MAIN + GOOD.replace("text/event-stream", "application/json").replace(
        '\tw.Header().Set("X-Accel-Buffering", "no")\n', ""
    )
    assert findings(src, "SSE004") == []


def test_gin_stream_flushes_and_stops(findings: Run) -> None:
    src = """package main

import (
	"io"

	"github.com/gin-gonic/gin"
)

func main() {
	r := gin.Default()
	api := r.Group("/api")
	api.GET("/events", func(c *gin.Context) {
		c.Header("X-Accel-Buffering", "no")
		c.Stream(func(w io.Writer) bool {
			c.SSEvent("tick", "x")
			return true
		})
	})
	r.Run(":8080")
}
"""
    assert findings(src, "SSE001") == []
    assert findings(src, "SSE002") == []
    assert findings(src, "SSE004") == []  # gin-contrib/sse sets Cache-Control: no-cache
