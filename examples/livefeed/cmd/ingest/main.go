// Command ingest pulls ticks from the exchange gateway and serves them to
// livefeed replicas as an HTTP long-poll: GET /ticks?since=N on :9090.
package main

import (
	"encoding/json"
	"log"
	"net/http"
	"strconv"
	"sync"
	"time"
)

type tick struct {
	Seq    int64   `json:"seq"`
	Symbol string  `json:"symbol"`
	Price  float64 `json:"price"`
}

type book struct {
	mu    sync.Mutex
	ticks []tick
}

func (b *book) since(seq int64, wait time.Duration) []tick {
	deadline := time.Now().Add(wait)
	b.mu.Lock()
	defer b.mu.Unlock()
	for {
		var out []tick
		for _, t := range b.ticks {
			if t.Seq > seq {
				out = append(out, t)
			}
		}
		if len(out) > 0 || time.Now().After(deadline) {
			return out
		}
		b.mu.Unlock()
		time.Sleep(50 * time.Millisecond)
		b.mu.Lock()
	}
}

func main() {
	b := &book{}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /ticks", func(w http.ResponseWriter, r *http.Request) {
		seq, _ := strconv.ParseInt(r.URL.Query().Get("since"), 10, 64)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(b.since(seq, 25*time.Second))
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})

	srv := &http.Server{
		Addr:              ":9090",
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		WriteTimeout:      30 * time.Second,
		// idle keep-alive connections are closed after a minute
		IdleTimeout: 60 * time.Second,
	}
	log.Fatal(srv.ListenAndServe())
}
