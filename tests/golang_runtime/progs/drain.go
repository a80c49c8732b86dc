// drain: a net/http server that handles SIGTERM the way most services do, for the XL004/XL005 tests.
//
// On SIGTERM it sleeps -sleep-before (0: none), then calls Server.Shutdown with a context whose
// deadline is -shutdown-timeout (0: no deadline), prints "shutdown returned after Ns: ERR" and exits.
// /ok answers at once; /events is an SSE stream that never ends while the client stays.
// The first line on stdout is "listening ADDR".
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	sleepBefore := flag.Duration("sleep-before", 0, "delay between SIGTERM and Shutdown")
	shutdownTimeout := flag.Duration("shutdown-timeout", 0, "deadline of Shutdown's context (0: none)")
	flag.Parse()

	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		flusher := w.(http.Flusher)
		for {
			if _, err := fmt.Fprint(w, ": ping\n\n"); err != nil {
				return
			}
			flusher.Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	fmt.Printf("listening %s\n", ln.Addr())
	os.Stdout.Sync()
	<-ctx.Done()
	time.Sleep(*sleepBefore)
	sctx := context.Background()
	if *shutdownTimeout > 0 {
		var cancel context.CancelFunc
		sctx, cancel = context.WithTimeout(sctx, *shutdownTimeout)
		defer cancel()
	}
	started := time.Now()
	err = srv.Shutdown(sctx)
	fmt.Printf("shutdown returned after %.1fs: %v\n", time.Since(started).Seconds(), err)
}
