// inventory: closes idle keep-alive connections after 2 s; its caller keeps pooled
// connections for 90 s and reuses them.
package main

import (
	"fmt"
	"log"
	"net/http"
	"time"
)

var upstream = &http.Client{
	Timeout: 5 * time.Second,
	Transport: &http.Transport{
		IdleConnTimeout:     90 * time.Second,
		MaxIdleConnsPerHost: 8,
	},
}

func main() {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/reserve", func(w http.ResponseWriter, r *http.Request) {
		// reserve calls itself through the Service: the same pool pattern the clients use
		resp, err := upstream.Post("http://inventory.shop.svc.cluster.local/stock", "application/json", nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		fmt.Fprintln(w, "reserved")
	})
	mux.HandleFunc("/stock", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "42") })
	srv := &http.Server{
		Addr:              ":8080",
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       2 * time.Second,
	}
	log.Fatal(srv.ListenAndServe())
}
