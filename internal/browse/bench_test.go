package browse

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"snapback/internal/browse/browsetest"
)

// BenchmarkExtract measures end-to-end extraction of one 64 MiB file to disk, plain and
// encrypted (blob read, AES-256-CBC decryption, temp file, rename).
func BenchmarkExtract(b *testing.B) {
	const size = 64 << 20
	content := randBytes(size)
	rates := map[string]float64{}
	for _, mode := range []string{"plain", "encrypted"} {
		password := ""
		if mode == "encrypted" {
			password = testPassword
		}
		dir := filepath.Join(b.TempDir(), mode)
		if err := browsetest.Write(dir, []browsetest.File{{Domain: "HomeDomain", RelativePath: "big.bin", Content: content}}, browsetest.Options{Password: password}); err != nil {
			b.Fatal(err)
		}
		bk, err := Open(context.Background(), dir, Options{Password: pw(password), TempDir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		start := time.Now()
		for i := 0; i < b.N; i++ {
			if _, err := bk.Extract(context.Background(), Filter{}, filepath.Join(b.TempDir(), fmt.Sprint(mode, i)), ExtractOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		rates[mode] = float64(size) * float64(b.N) / time.Since(start).Seconds() / 1e6
		b.StopTimer()
		bk.Close()
	}
	b.ReportMetric(rates["plain"], "plain-MB/s")
	b.ReportMetric(rates["encrypted"], "encrypted-MB/s")
	b.Logf("\n%-34s %8s\n%-34s %8.0f\n%-34s %8.0f", "extract one 64 MiB file to disk", "MB/s", "plain", rates["plain"], "encrypted (decrypt + write)", rates["encrypted"])
}
