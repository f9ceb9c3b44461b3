// Package offheap provides arrays of pointer-free values outside the Go heap, for the tables
// of a few tens of bytes per file that a million-file backup keeps until its end (issue #16).
//
// The garbage collector lets the heap grow to twice what is live (GOGC=100), so 20 MB of
// entries in a slice cost about 40 MB of resident memory, and more while append doubles
// the slice. On Linux an array here is an anonymous private mapping with MAP_NORESERVE: the
// address space for the most entries a run may hold is reserved at once, and the kernel
// provides each page only when it is first written, so an array costs what its entries
// take. The collector neither scans the mapping nor counts it towards its growth target.
// Elsewhere, or when the mapping fails (a 32-bit system short of address space), the array
// is an ordinary slice.
package offheap

import "unsafe"

// Mem owns the mapping one array lives in; its zero value owns none.
type Mem struct {
	b []byte
}

// Alloc returns an empty slice with room for n values of T outside the Go heap, owned by m
// until m.Free; m must own none yet. T must hold no pointers: the collector does not see the memory, so a
// pointer stored there would not keep its target alive.
//
// Appending beyond n moves the slice to the Go heap, as append always does when it grows:
// nothing breaks, it only costs memory, so n is an expected bound, not a hard one.
func Alloc[T any](m *Mem, n int) []T {
	var zero T
	size := int(unsafe.Sizeof(zero))
	if size == 0 || n <= 0 {
		return nil
	}
	b, ok := mapAnon(n * size)
	if !ok {
		return make([]T, 0, min(n, 1024))
	}
	if m.b != nil {
		unmap(b)
		panic("offheap: Alloc with a Mem that owns an array")
	}
	m.b = b
	return unsafe.Slice((*T)(unsafe.Pointer(&b[0])), n)[:0]
}

// Free releases m's mapping. No slice Alloc returned for it may be used afterwards (one that
// append moved to the heap may: the collector owns it). Free is idempotent.
func (m *Mem) Free() {
	if m.b != nil {
		unmap(m.b)
		m.b = nil
	}
}
