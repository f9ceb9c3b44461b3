package backupcrypto

import (
	"crypto/sha256"
	"hash"
)

type hashWriter struct{ h hash.Hash }

func newHashWriter() *hashWriter                  { return &hashWriter{sha256.New()} }
func (w *hashWriter) Write(p []byte) (int, error) { return w.h.Write(p) }
func (w *hashWriter) sum() []byte                 { return w.h.Sum(nil) }

func newHashOf(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}
