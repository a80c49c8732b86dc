// The kubelet's HTTP probe client, rebuilt from pkg/probe/http (http.go, request.go) with the
// standard library only: the oracle for the requests `tcpdoctor probe` sends.
// Usage: kubelet_client URL [Header: value]...
package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	headers := http.Header{}
	for _, h := range os.Args[2:] {
		name, value, _ := strings.Cut(h, ":")
		headers.Add(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	req, _ := http.NewRequest("GET", os.Args[1], nil)
	if _, ok := headers["User-Agent"]; !ok {
		headers.Set("User-Agent", "kube-probe/1.34")
	}
	if _, ok := headers["Accept"]; !ok {
		headers.Set("Accept", "*/*")
	} else if headers.Get("Accept") == "" {
		headers.Del("Accept")
	}
	req.Header = headers
	req.Host = headers.Get("Host")
	transport := &http.Transport{
		TLSClientConfig:    &tls.Config{InsecureSkipVerify: true},
		DisableKeepAlives:  true,
		Proxy:              http.ProxyURL(nil),
		DisableCompression: true,
	}
	client := &http.Client{Timeout: time.Second, Transport: transport}
	res, err := client.Do(req)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	defer res.Body.Close()
	io.Copy(io.Discard, io.LimitReader(res.Body, 10<<10))
	fmt.Println(res.StatusCode)
}
