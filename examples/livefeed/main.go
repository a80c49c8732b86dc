// Command livefeed streams price ticks to browsers as Server-Sent Events.
//
// It subscribes to the ingest service (HTTP long-poll on :9090) and fans every
// tick out to the connected /events streams. See README.md for the endpoints and
// deploy/ for the Kubernetes manifests.
//
// This is the example service of `tcpdoctor demo`: it is written the way a busy
// team writes a service, and some of its settings are wrong on purpose.
package main

import (
	"context"
	"errors"
	"flag"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

var (
	listen    = flag.String("listen", ":8080", "address of the HTTP server")
	upstream  = flag.String("upstream", "ingest.markets.svc:9090", "host:port of the ingest feed")
	heartbeat = flag.Duration("heartbeat", 15*time.Second, "interval of the SSE heartbeat comment")
)

func main() {
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	hub := newHub()
	feed := newFeedClient("http://" + *upstream)
	go feed.run(ctx, hub)

	mux := http.NewServeMux()
	mux.Handle("GET /events", eventsHandler(hub, *heartbeat))
	mux.HandleFunc("GET /healthz", healthz)
	mux.HandleFunc("GET /readyz", readyz(feed))

	srv := &http.Server{
		Addr:              *listen,
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		// "one slow client held 4k goroutines" (INC-1870): bound every response.
		// WriteTimeout also bounds the /events stream: every stream is cut at 30 s.
		WriteTimeout: 30 * time.Second,
		IdleTimeout:  2 * time.Minute,
	}

	go func() {
		log.Printf("livefeed listening on %s", *listen)
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Fatalf("listen: %v", err)
		}
	}()

	<-ctx.Done()
	log.Print("SIGTERM: draining")
	// Streams take a while to say goodbye; give them half a minute.
	// (The pod's terminationGracePeriodSeconds is 5: the kubelet kills us first.)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Printf("shutdown: %v", err)
	}
}
