// A test server for `tcpdoctor probe`: fast and slow health endpoints, an SSE stream,
// redirects, a self-signed HTTPS listener, and a record of the raw requests it received.
package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"time"
)

type recorder struct {
	mu    sync.Mutex
	heads []string
	conns int
}

// recordingConn keeps the first bytes of each connection (the request head, exactly as sent).
type recordingConn struct {
	net.Conn
	rec  *recorder
	buf  []byte
	done bool
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if !c.done && n > 0 {
		c.buf = append(c.buf, p[:n]...)
		if i := strings.Index(string(c.buf), "\r\n\r\n"); i >= 0 || len(c.buf) > 8192 {
			c.done = true
			c.rec.mu.Lock()
			c.rec.heads = append(c.rec.heads, string(c.buf))
			c.rec.mu.Unlock()
		}
	}
	return n, err
}

type recordingListener struct {
	net.Listener
	rec *recorder
}

func (l recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.rec.mu.Lock()
	l.rec.conns++
	l.rec.mu.Unlock()
	return &recordingConn{Conn: c, rec: l.rec}, nil
}

func main() {
	rec := &recorder{}
	mux := http.NewServeMux()
	mux.HandleFunc("/livez", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(1500 * time.Millisecond)
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/slowish", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(700 * time.Millisecond)
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "db down", 503) })
	mux.HandleFunc("/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		fl := w.(http.Flusher)
		for {
			if _, err := fmt.Fprintf(w, "data: tick %d\n\n", time.Now().UnixNano()); err != nil {
				return
			}
			fl.Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	})
	mux.HandleFunc("/same-host-redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/livez", http.StatusFound)
	})
	mux.HandleFunc("/other-host-redirect", func(w http.ResponseWriter, r *http.Request) {
		// same server, but named "localhost": another host name for the kubelet's redirect check
		_, port, _ := net.SplitHostPort(r.Host)
		http.Redirect(w, r, "http://localhost:"+port+"/fail", http.StatusFound)
	})
	mux.HandleFunc("/_seen", func(w http.ResponseWriter, r *http.Request) {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		json.NewEncoder(w).Encode(map[string]any{"heads": rec.heads, "conns": rec.conns})
	})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go http.Serve(recordingListener{ln, rec}, mux)

	tlsSrv := httptest.NewUnstartedServer(mux)
	tlsSrv.StartTLS() // self-signed certificate from httptest

	fmt.Printf("{\"http\": %d, \"https\": %q}\n", ln.Addr().(*net.TCPAddr).Port, tlsSrv.URL)
	os.Stdout.Sync()
	select {}
}
