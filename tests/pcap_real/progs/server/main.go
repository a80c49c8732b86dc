// A small HTTP server for the capture tests: HTTP/1.1 and cleartext HTTP/2 on every address given,
// a 1 s idle timeout (its FIN or GOAWAY is what the capture rules must find), a fast /healthz,
// a slow /slow, a silent /hang and a never-ending SSE stream on /events.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	addrs := flag.String("addrs", "127.0.0.1:8080", "comma-separated listen addresses")
	flag.Parse()

	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(1300 * time.Millisecond)
		w.Write([]byte("late\n"))
	})
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(30 * time.Second) // never answers while the capture runs
	})
	mux.HandleFunc("/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		flusher := w.(http.Flusher)
		for {
			if _, err := fmt.Fprintf(w, "data: tick %d\n\n", time.Now().UnixMilli()); err != nil {
				return
			}
			flusher.Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(300 * time.Millisecond):
			}
		}
	})

	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Handler:     mux,
		IdleTimeout: 1 * time.Second,
		Protocols:   &protocols,
	}
	for _, addr := range strings.Split(*addrs, ",") {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		go srv.Serve(ln)
	}
	fmt.Println("ready")
	select {}
}
