// stall: an http.Client against a server that accepts and never answers (CLI001).
//
// -timeout is http.Client.Timeout (0: none, like http.DefaultClient). After -watch the program
// reports whether the request is still blocked. Prints {"blocked": bool, "error": "...", "seconds": s}.
package main

import (
	"encoding/json"
	"flag"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	timeout := flag.Duration("timeout", 0, "http.Client.Timeout")
	watch := flag.Duration("watch", 2*time.Second, "how long to wait for the request")
	flag.Parse()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	var held []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c) // read nothing, answer nothing
		}
	}()
	client := &http.Client{Timeout: *timeout}
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		resp, err := client.Get("http://" + ln.Addr().String() + "/")
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	out := map[string]any{}
	select {
	case err := <-done:
		out["blocked"] = false
		out["error"] = err.Error()
		out["seconds"] = time.Since(start).Seconds()
	case <-time.After(*watch):
		out["blocked"] = true
	}
	json.NewEncoder(os.Stdout).Encode(out)
}
