// muxoracle: which http.ServeMux pattern serves each GET path, as net/http itself decides.
//
// stdin: {"patterns": ["GET /healthz", "/api/", ...], "paths": ["/healthz", ...]}
// stdout: {"/healthz": "GET /healthz", "/nothing": "404", "/api": "301", ...}
package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
)

func main() {
	var in struct {
		Patterns []string `json:"patterns"`
		Paths    []string `json:"paths"`
	}
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	for _, p := range in.Patterns {
		pattern := p
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(pattern)) })
	}
	out := map[string]string{}
	for _, path := range in.Paths {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		switch rec.Code {
		case http.StatusOK:
			out[path] = rec.Body.String()
		default:
			out[path] = http.StatusText(rec.Code)
		}
	}
	json.NewEncoder(os.Stdout).Encode(out)
}
