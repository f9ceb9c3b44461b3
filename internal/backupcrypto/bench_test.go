package backupcrypto

import (
	"bytes"
	"crypto/rand"
	"io"
	"testing"
	"time"
)

// BenchmarkDeriveKEK times the password derivation with the real parameters (DPIC 10,000,000,
// ITER 10,000): what opening an encrypted backup costs once per process.
func BenchmarkDeriveKEK(b *testing.B) {
	kb := &KeyBag{Salt: make([]byte, 20), Iter: DefaultIter, DPIC: DefaultDPIC, DPSL: make([]byte, 20)}
	var total time.Duration
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if _, err := DeriveKEK(kb, []byte("benchmark password")); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
	}
	per := total / time.Duration(b.N)
	b.ReportMetric(per.Seconds(), "s/derive")
	b.Logf("\n%-40s %10s\n%-40s %9.2fs", "key derivation (real parameters)", "time", "PBKDF2-SHA256 10M + PBKDF2-SHA1 10k", per.Seconds())
}

// BenchmarkCrypt measures streaming AES-256-CBC throughput of 64 MiB in memory, both ways.
func BenchmarkCrypt(b *testing.B) {
	const size = 64 << 20
	key := make([]byte, 32)
	rand.Read(key)
	plain := make([]byte, size)
	rand.Read(plain)
	var ct bytes.Buffer
	ct.Grow(size + 16)
	if _, err := Encrypt(&ct, bytes.NewReader(plain), key); err != nil {
		b.Fatal(err)
	}
	rate := func(f func() error) float64 {
		start := time.Now()
		for i := 0; i < b.N; i++ {
			if err := f(); err != nil {
				b.Fatal(err)
			}
		}
		return float64(size) * float64(b.N) / time.Since(start).Seconds() / 1e6
	}
	b.SetBytes(size)
	b.ResetTimer()
	dec := rate(func() error { _, err := Decrypt(io.Discard, bytes.NewReader(ct.Bytes()), key); return err })
	enc := rate(func() error { _, err := Encrypt(io.Discard, bytes.NewReader(plain), key); return err })
	b.ReportMetric(dec, "decrypt-MB/s")
	b.ReportMetric(enc, "encrypt-MB/s")
	b.Logf("\n%-32s %10s\n%-32s %10.0f\n%-32s %10.0f", "AES-256-CBC streaming (64 MiB)", "MB/s", "decrypt + PKCS#7 strip", dec, "encrypt + PKCS#7 pad", enc)
}
