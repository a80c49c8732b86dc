// staleconn: a Go server and a Go client in one process, for the CLI002/XL006 test.
//
// The server closes idle keep-alive connections after -server-idle (http.Server.IdleTimeout).
// The client's http.Transport keeps idle connections for -client-idle (IdleConnTimeout).
// The client makes one GET, waits -wait, then sends a second request with -method.
// It prints one JSON object: the second request's error (if any), whether its first
// attempt went out on a reused connection, and how many connections the server accepted.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

type result struct {
	Method       string `json:"method"`
	Error        string `json:"error"`
	Status       int    `json:"status"`
	Attempts     []bool `json:"attempts_reused"` // one entry per connection the request was sent on
	Accepted     int64  `json:"server_connections"`
	ServerCloses int64  `json:"server_idle_closes"`
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	serverIdle := flag.Duration("server-idle", 300*time.Millisecond, "http.Server.IdleTimeout")
	clientIdle := flag.Duration("client-idle", 90*time.Second, "http.Transport.IdleConnTimeout")
	wait := flag.Duration("wait", 600*time.Millisecond, "pause between the two requests")
	method := flag.String("method", http.MethodPost, "method of the second request")
	flag.Parse()

	var accepted, idleCloses atomic.Int64
	var mu sync.Mutex
	idleSince := map[net.Conn]bool{}
	srv := &http.Server{
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       *serverIdle,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			fmt.Fprintf(w, "%s ok\n", r.Method)
		}),
		ConnState: func(c net.Conn, s http.ConnState) {
			mu.Lock()
			defer mu.Unlock()
			switch s {
			case http.StateNew:
				accepted.Add(1)
			case http.StateIdle:
				idleSince[c] = true
			case http.StateActive:
				delete(idleSince, c)
			case http.StateClosed:
				if idleSince[c] {
					idleCloses.Add(1)
				}
				delete(idleSince, c)
			}
		},
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	go srv.Serve(ln)
	url := "http://" + ln.Addr().String() + "/"

	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{IdleConnTimeout: *clientIdle, MaxIdleConnsPerHost: 4},
	}
	first, err := client.Get(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, "first request:", err)
		os.Exit(1)
	}
	io.Copy(io.Discard, first.Body)
	first.Body.Close()

	time.Sleep(*wait)

	res := result{Method: *method}
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		res.Attempts = append(res.Attempts, info.Reused)
	}}
	ctx := httptrace.WithClientTrace(context.Background(), trace)
	req, _ := http.NewRequestWithContext(ctx, *method, url, bytes.NewReader([]byte(`{"order":42}`)))
	if *method == http.MethodGet || *method == http.MethodHead {
		req.Body, req.GetBody, req.ContentLength = nil, nil, 0
	}
	resp, err := client.Do(req)
	if err != nil {
		res.Error = err.Error()
	} else {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		res.Status = resp.StatusCode
	}
	time.Sleep(50 * time.Millisecond)
	res.Accepted = accepted.Load()
	res.ServerCloses = idleCloses.Load()
	json.NewEncoder(os.Stdout).Encode(res)
}
