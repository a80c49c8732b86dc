package main

import (
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// hub fans ticks out to every connected stream.
type hub struct {
	mu      sync.Mutex
	clients map[chan []byte]struct{}
	last    time.Time
}

func newHub() *hub { return &hub{clients: map[chan []byte]struct{}{}} }

func (h *hub) subscribe() chan []byte {
	ch := make(chan []byte, 64)
	h.mu.Lock()
	h.clients[ch] = struct{}{}
	h.mu.Unlock()
	return ch
}

func (h *hub) unsubscribe(ch chan []byte) {
	h.mu.Lock()
	delete(h.clients, ch)
	h.mu.Unlock()
}

func (h *hub) publish(tick []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.last = time.Now()
	for ch := range h.clients {
		select {
		case ch <- tick:
		default: // a slow reader loses ticks rather than stalling the feed
		}
	}
}

// eventsHandler is the product: one SSE stream per client, until the client leaves.
func eventsHandler(h *hub, every time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		flusher, ok := w.(http.Flusher)
		if !ok {
			http.Error(w, "streaming unsupported", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Accel-Buffering", "no")
		ch := h.subscribe()
		defer h.unsubscribe(ch)

		ticker := time.NewTicker(every)
		defer ticker.Stop()
		for {
			select {
			case <-r.Context().Done():
				return
			case tick := <-ch:
				if _, err := fmt.Fprintf(w, "event: tick\ndata: %s\n\n", tick); err != nil {
					return
				}
			case <-ticker.C:
				if _, err := io.WriteString(w, ": heartbeat\n\n"); err != nil {
					return
				}
			}
			flusher.Flush()
		}
	})
}

// healthz is the liveness endpoint: the process is up.
func healthz(w http.ResponseWriter, r *http.Request) {
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, "ok\n")
}

// readyz is the readiness endpoint: ready when the ingest feed answers.
// It asks ingest on every probe, with no deadline of its own.
func readyz(feed *feedClient) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		resp, err := http.Get(feed.base + "/healthz")
		if err != nil {
			http.Error(w, "ingest unreachable: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			http.Error(w, "ingest not ready", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	}
}
