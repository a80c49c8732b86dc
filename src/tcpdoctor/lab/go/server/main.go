// tdlab-server: the lab's HTTP server, a plain net/http server whose behaviour the
// scenarios set with flags (timeouts, streaming, slow accept, shutdown style).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// slowListener sleeps before each Accept so the accept queue fills under a burst.
type slowListener struct {
	net.Listener
	delay time.Duration
}

func (l slowListener) Accept() (net.Conn, error) {
	time.Sleep(l.delay)
	return l.Listener.Accept()
}

func main() {
	addr := flag.String("addr", ":8080", "listen address")
	idle := flag.Duration("idle-timeout", 0, "http.Server IdleTimeout")
	read := flag.Duration("read-timeout", 0, "http.Server ReadTimeout")
	readHeader := flag.Duration("read-header-timeout", 5*time.Second, "http.Server ReadHeaderTimeout")
	write := flag.Duration("write-timeout", 0, "http.Server WriteTimeout")
	acceptDelay := flag.Duration("accept-delay", 0, "sleep before each Accept")
	handlerDelay := flag.Duration("handler-delay", 0, "sleep in /work before answering")
	bigSize := flag.Int("big-size", 4<<20, "bytes served by /big")
	shutdown := flag.String("on-sigterm", "shutdown", "shutdown (Server.Shutdown at once), drain=D (keep serving D, then Shutdown), exit")
	flag.Parse()

	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/work", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(*handlerDelay)
		fmt.Fprintln(w, "done")
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(*bigSize))
		chunk := []byte(strings.Repeat("x", 16384))
		for sent := 0; sent < *bigSize; sent += len(chunk) {
			n := len(chunk)
			if *bigSize-sent < n {
				n = *bigSize - sent
			}
			if _, err := w.Write(chunk[:n]); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		fl := w.(http.Flusher)
		for i := 0; ; i++ {
			if _, err := fmt.Fprintf(w, "data: {\"seq\": %d}\n\n", i); err != nil {
				return
			}
			fl.Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	})

	srv := &http.Server{
		Addr: *addr, Handler: mux,
		IdleTimeout: *idle, ReadTimeout: *read, ReadHeaderTimeout: *readHeader, WriteTimeout: *write,
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	if *acceptDelay > 0 {
		ln = slowListener{ln, *acceptDelay}
	}
	done := make(chan struct{})
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM)
		<-sig
		switch {
		case *shutdown == "exit":
			os.Exit(0)
		case strings.HasPrefix(*shutdown, "drain="):
			d, _ := time.ParseDuration(strings.TrimPrefix(*shutdown, "drain="))
			time.Sleep(d)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		close(done)
	}()
	fmt.Println("listening", ln.Addr())
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		log.Fatal(err)
	}
	<-done
}
