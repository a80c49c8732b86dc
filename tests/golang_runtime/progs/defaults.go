// defaults: the net/http and net defaults the CLI rules rely on, as this Go toolchain has them.
//
// Prints one JSON object: http.DefaultTransport's settings, http.DefaultClient's Timeout, a zero
// http.Transport's IdleConnTimeout, and the TCP keep-alive a net.Dialer really sets on a socket
// (SO_KEEPALIVE and TCP_KEEPIDLE, read back with getsockopt) for KeepAlive 0 and -1.
package main

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"syscall"
)

func keepalive(d *net.Dialer, addr string) (on int, idle int) {
	c, err := d.Dial("tcp", addr)
	if err != nil {
		panic(err)
	}
	defer c.Close()
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		panic(err)
	}
	raw.Control(func(fd uintptr) {
		on, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE)
		idle, _ = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE)
	})
	return on, idle
}

func main() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	dt := http.DefaultTransport.(*http.Transport)
	zeroOn, zeroIdle := keepalive(&net.Dialer{}, ln.Addr().String())
	offOn, _ := keepalive(&net.Dialer{KeepAlive: -1}, ln.Addr().String())
	json.NewEncoder(os.Stdout).Encode(map[string]any{
		"default_idle_conn_timeout_s":      dt.IdleConnTimeout.Seconds(),
		"default_max_idle_conns":           dt.MaxIdleConns,
		"default_max_idle_conns_per_host":  dt.MaxIdleConnsPerHost,
		"DefaultMaxIdleConnsPerHost":       http.DefaultMaxIdleConnsPerHost,
		"default_force_attempt_http2":      dt.ForceAttemptHTTP2,
		"default_tls_handshake_timeout_s":  dt.TLSHandshakeTimeout.Seconds(),
		"default_client_timeout_s":         http.DefaultClient.Timeout.Seconds(),
		"zero_transport_idle_conn_timeout": (&http.Transport{}).IdleConnTimeout.Seconds(),
		"dialer_keepalive_zero_on":         zeroOn,
		"dialer_keepalive_zero_idle_s":     zeroIdle,
		"dialer_keepalive_negative_on":     offOn,
	})
}
