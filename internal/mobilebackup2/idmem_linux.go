package mobilebackup2

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// idMem is idSet's array outside the Go heap: an anonymous private mapping whose pages the
// kernel provides only when first written, so the address space reserved for maxIDs
// entries costs memory only for the entries there are. The garbage collector neither
// scans it nor counts it, so it does not raise the heap's growth target either.
type idMem struct {
	b []byte
}

// alloc returns an empty slice with room for n entries; a failed mapping falls back to the
// Go heap.
func (m *idMem) alloc(n int) []blobID {
	b, err := unix.Mmap(-1, 0, n*blobIDLen, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return make([]blobID, 0, 1024)
	}
	m.b = b
	return unsafe.Slice((*blobID)(unsafe.Pointer(&b[0])), n)[:0]
}

// free unmaps the array; no slice of it may be used afterwards.
func (m *idMem) free() {
	if m.b != nil {
		_ = unix.Munmap(m.b)
		m.b = nil
	}
}
