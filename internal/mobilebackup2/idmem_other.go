//go:build !linux

package mobilebackup2

// idMem is idSet's array on the Go heap (see idmem_linux.go for Linux's).
type idMem struct{}

func (m *idMem) alloc(n int) []blobID { return make([]blobID, 0, 1024) }

func (m *idMem) free() {}
