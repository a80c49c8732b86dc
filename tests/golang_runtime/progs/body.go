// body: what the client does with response bodies decides whether connections are reused (CLI005).
//
// Makes -requests sequential GETs to a local server answering -size bytes, and per response:
// -mode none (neither read nor closed), close (closed unread), drain (read to EOF, then closed).
// Prints {"server_connections": N}.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"
)

func main() {
	mode := flag.String("mode", "drain", "none | close | drain")
	size := flag.Int("size", 64, "response body size in bytes")
	requests := flag.Int("requests", 5, "sequential requests")
	flag.Parse()

	payload := bytes.Repeat([]byte("x"), *size)
	var accepted atomic.Int64
	srv := &http.Server{
		ReadHeaderTimeout: 5 * time.Second,
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(payload) }),
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
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{IdleConnTimeout: time.Minute}}
	for i := 0; i < *requests; i++ {
		resp, err := client.Get("http://" + ln.Addr().String() + "/")
		if err != nil {
			panic(err)
		}
		switch *mode {
		case "close":
			resp.Body.Close()
		case "drain":
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		time.Sleep(100 * time.Millisecond) // let the transport's read loop settle the connection
	}
	json.NewEncoder(os.Stdout).Encode(map[string]int64{"server_connections": accepted.Load()})
}
