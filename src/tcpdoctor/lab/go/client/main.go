// tdlab-client: the lab's HTTP client, a plain net/http client whose behaviour the
// scenarios set with flags; it prints one line per request: "ok|err <ms> <detail>".
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

func main() {
	url := flag.String("url", "http://10.0.0.2:8080/work", "URL to request")
	n := flag.Int("n", 10, "requests per worker")
	interval := flag.Duration("interval", 100*time.Millisecond, "pause between a worker's requests")
	jitter := flag.Duration("jitter", 0, "spread of the pause: worker i waits interval + i*jitter/workers")
	workers := flag.Int("workers", 1, "concurrent workers")
	idleConn := flag.Duration("idle-conn-timeout", 90*time.Second, "Transport.IdleConnTimeout")
	method := flag.String("method", "GET", "request method")
	noKeepAlive := flag.Bool("no-keepalive", false, "Transport.DisableKeepAlives")
	timeout := flag.Duration("timeout", 5*time.Second, "Client.Timeout")
	connectOnly := flag.Bool("connect-only", false, "only open and close TCP connections")
	noRead := flag.Duration("no-read", 0, "send one GET and do not read the answer for this long")
	flag.Parse()

	if *noRead > 0 {
		target := strings.TrimPrefix(*url, "http://")
		host, path, _ := strings.Cut(target, "/")
		conn, err := net.Dial("tcp", host)
		if err != nil {
			fmt.Println("err 0", err)
			os.Exit(1)
		}
		tcp := conn.(*net.TCPConn)
		tcp.SetReadBuffer(4096)
		fmt.Fprintf(conn, "GET /%s HTTP/1.1\r\nHost: %s\r\n\r\n", path, host)
		time.Sleep(*noRead)
		conn.Close()
		fmt.Println("ok 0 stopped reading")
		return
	}

	tr := &http.Transport{
		IdleConnTimeout:     *idleConn,
		MaxIdleConnsPerHost: *workers,
		DisableKeepAlives:   *noKeepAlive,
		DialContext:         (&net.Dialer{Timeout: *timeout}).DialContext,
	}
	client := &http.Client{Transport: tr, Timeout: *timeout}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for w := 0; w < *workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			pause := *interval
			if *workers > 1 {
				pause += time.Duration(int64(*jitter) * int64(w) / int64(*workers))
			}
			for i := 0; i < *n; i++ {
				start := time.Now()
				var line string
				if *connectOnly {
					host := strings.TrimPrefix(*url, "http://")
					host, _, _ = strings.Cut(host, "/")
					conn, err := net.DialTimeout("tcp", host, *timeout)
					if err != nil {
						line = fmt.Sprintf("err %d %v", time.Since(start).Milliseconds(), err)
					} else {
						conn.Close()
						line = fmt.Sprintf("ok %d connected", time.Since(start).Milliseconds())
					}
				} else {
					req, _ := http.NewRequest(*method, *url, strings.NewReader(""))
					resp, err := client.Do(req)
					if err != nil {
						line = fmt.Sprintf("err %d %v", time.Since(start).Milliseconds(), err)
					} else {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						line = fmt.Sprintf("ok %d %d", time.Since(start).Milliseconds(), resp.StatusCode)
					}
				}
				mu.Lock()
				fmt.Println(line)
				mu.Unlock()
				time.Sleep(pause)
			}
		}(w)
	}
	wg.Wait()
}
