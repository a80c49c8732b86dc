// pool: how many TCP connections a net/http client opens, for the CLI003/CLI004 tests.
//
// The client sends -rounds rounds of -concurrency simultaneous GETs to a local server whose
// handler takes 100 ms. -per-host sets Transport.MaxIdleConnsPerHost (0: net/http's default 2);
// -transport-per-request builds a new Transport for every request (as a handler or loop might).
// Prints {"requests": N, "server_connections": M}.
package main

import (
	"encoding/json"
	"flag"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	perHost := flag.Int("per-host", 0, "MaxIdleConnsPerHost")
	concurrency := flag.Int("concurrency", 10, "simultaneous requests per round")
	rounds := flag.Int("rounds", 3, "rounds")
	perRequest := flag.Bool("transport-per-request", false, "a new Transport for each request")
	flag.Parse()

	var accepted atomic.Int64
	srv := &http.Server{
		ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(100 * time.Millisecond)
			io.WriteString(w, "ok")
		}),
		ConnState: func(c net.Conn, s http.ConnState) {
			if s == http.StateNew {
				accepted.Add(1)
			}
		},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go srv.Serve(ln)
	url := "http://" + ln.Addr().String() + "/"

	shared := &http.Transport{MaxIdleConnsPerHost: *perHost, IdleConnTimeout: time.Minute}
	var requests atomic.Int64
	for round := 0; round < *rounds; round++ {
		var wg sync.WaitGroup
		for i := 0; i < *concurrency; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tr := shared
				if *perRequest {
					tr = &http.Transport{MaxIdleConnsPerHost: *perHost, IdleConnTimeout: time.Minute}
				}
				client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
				resp, err := client.Get(url)
				if err != nil {
					panic(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				requests.Add(1)
			}()
		}
		wg.Wait()
	}
	json.NewEncoder(os.Stdout).Encode(map[string]int64{
		"requests":           requests.Load(),
		"server_connections": accepted.Load(),
	})
}
