// ssestream: an SSE server for the runtime-behaviour tests (SRV003, SSE001).
//
// It serves /events: `-events` events, one every `-interval`, each flushed to the
// client only when -flush is set, and it stops as soon as the request context is
// cancelled (which net/http does when a write to the connection fails).
// The server's WriteTimeout is -write-timeout (0 = none, the net/http default).
// The first line on stdout is "listening ADDR".
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	writeTimeout := flag.Duration("write-timeout", 0, "http.Server.WriteTimeout")
	flush := flag.Bool("flush", true, "flush after every event")
	events := flag.Int("events", 20, "events per stream")
	interval := flag.Duration("interval", 100*time.Millisecond, "time between events")
	flag.Parse()

	mux := http.NewServeMux()
	mux.HandleFunc("/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		flusher, _ := w.(http.Flusher)
		ticker := time.NewTicker(*interval)
		defer ticker.Stop()
		for i := 0; i < *events; i++ {
			select {
			case <-r.Context().Done():
				fmt.Fprintf(os.Stderr, "stream stopped after %d events: %v\n", i, r.Context().Err())
				return
			case <-ticker.C:
			}
			if _, err := fmt.Fprintf(w, "data: %d\n\n", i); err != nil {
				fmt.Fprintf(os.Stderr, "write failed after %d events: %v\n", i, err)
				return
			}
			if *flush && flusher != nil {
				flusher.Flush()
			}
		}
	})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("listening %s\n", ln.Addr())
	os.Stdout.Sync()
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: *writeTimeout}
	if err := srv.Serve(ln); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
