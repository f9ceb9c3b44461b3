package statuspage

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkEndpoints measures one request of each endpoint over loopback for a device with
// two snapshots and a failure (the View itself is static here; the app's View reads the
// store's records on top).
func BenchmarkEndpoints(b *testing.B) {
	h, err := Handler(Options{Source: staticSource{sampleView()}, Actions: &recorder{}, Token: token})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	for _, path := range []string{"/", "/api/status", "/metrics"} {
		b.Run(path, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				res, err := http.Get(srv.URL + path)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
			}
		})
	}
}
