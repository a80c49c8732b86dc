package main

import (
	"context"
	"encoding/json"
	"log"
	"net"
	"net/http"
	"time"
)

// feedClient long-polls ingest for ticks: GET /ticks?since=N answers as soon as
// there is something new, or after 25 s with an empty list.
type feedClient struct {
	base string
	http *http.Client
}

func newFeedClient(base string) *feedClient {
	return &feedClient{
		base: base,
		http: &http.Client{
			// no Timeout: a long-poll may legitimately take 25 s
			Transport: &http.Transport{
				DialContext: (&net.Dialer{
					Timeout:   3 * time.Second,
					KeepAlive: 30 * time.Second,
				}).DialContext,
				// "keep connections warm between polls"
				IdleConnTimeout:     5 * time.Minute,
				MaxIdleConns:        10,
				TLSHandshakeTimeout: 5 * time.Second,
			},
		},
	}
}

type tick struct {
	Seq    int64   `json:"seq"`
	Symbol string  `json:"symbol"`
	Price  float64 `json:"price"`
}

func (f *feedClient) run(ctx context.Context, h *hub) {
	var since int64
	for ctx.Err() == nil {
		ticks, err := f.poll(ctx, since)
		if err != nil {
			log.Printf("ingest poll: %v", err)
			time.Sleep(time.Second)
			continue
		}
		for _, t := range ticks {
			since = t.Seq
			data, _ := json.Marshal(t)
			h.publish(data)
		}
	}
}

func (f *feedClient) poll(ctx context.Context, since int64) ([]tick, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.base+"/ticks", nil)
	if err != nil {
		return nil, err
	}
	q := req.URL.Query()
	q.Set("since", itoa(since))
	req.URL.RawQuery = q.Encode()
	resp, err := f.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var ticks []tick
	if err := json.NewDecoder(resp.Body).Decode(&ticks); err != nil {
		return nil, err
	}
	return ticks, nil
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
