package offheap

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

type entry struct {
	a [20]byte
	n uint64
}

// TestValuesSurviveGrowth: values written through the slice read back, also after an append
// beyond the room asked for moved the slice (to the heap) and after the mapping is freed.
func TestValuesSurviveGrowth(t *testing.T) {
	var m Mem
	s := Alloc[entry](&m, 1000)
	if len(s) != 0 || cap(s) < 1000 {
		t.Fatalf("len %d cap %d; want an empty slice with room for 1000", len(s), cap(s))
	}
	for i := range 1500 {
		s = append(s, entry{a: [20]byte{byte(i)}, n: uint64(i)})
	}
	m.Free()
	m.Free() // idempotent
	for i, e := range s {
		if e.n != uint64(i) || e.a[0] != byte(i) {
			t.Fatalf("entry %d reads %+v", i, e)
		}
	}
}

// TestOutsideHeap (Linux): 64 MB of entries raise neither the Go heap nor, until written,
// the resident set; written, they cost about their size, and Free returns the address space.
func TestOutsideHeap(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the mapping is Linux's; elsewhere Alloc is a plain slice")
	}
	const n = 64 << 20 / 32 // 64 MB of 32-byte entries
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	vsz0, rss0 := statm(t)
	var m Mem
	s := Alloc[entry](&m, n)
	vsz1, rss1 := statm(t)
	if vsz1-vsz0 < 60<<20 {
		t.Fatalf("address space grew by %d bytes; want the 64 MB mapping", vsz1-vsz0)
	}
	if rss1-rss0 > 8<<20 {
		t.Errorf("resident set grew by %d bytes before anything was written", rss1-rss0)
	}
	for i := range n {
		s = append(s, entry{n: uint64(i)})
	}
	_, rss2 := statm(t)
	if d := rss2 - rss0; d < 56<<20 || d > 80<<20 {
		t.Errorf("resident set grew by %d bytes with 64 MB written", d)
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if d := int64(after.HeapAlloc) - int64(before.HeapAlloc); d > 8<<20 {
		t.Errorf("Go heap grew by %d bytes; the entries must not be on it", d)
	}
	if s[n-1].n != n-1 {
		t.Fatalf("last entry reads %+v", s[n-1])
	}
	m.Free()
	if vsz3, _ := statm(t); vsz1-vsz3 < 60<<20 {
		t.Errorf("address space after Free shrank by %d bytes; want the 64 MB mapping gone", vsz1-vsz3)
	}
}

// statm returns the process's virtual size and resident set in bytes.
func statm(t *testing.T) (vsz, rss int64) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	page := int64(os.Getpagesize())
	v, _ := strconv.ParseInt(f[0], 10, 64)
	r, _ := strconv.ParseInt(f[1], 10, 64)
	return v * page, r * page
}

// TestAllocTwicePanics: a Mem owns one array; a second Alloc would otherwise leave the first
// array's slice pointing at memory someone might free.
func TestAllocTwicePanics(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("only a mapping is owned")
	}
	var m Mem
	defer m.Free()
	_ = Alloc[entry](&m, 10)
	defer func() {
		if recover() == nil {
			t.Fatal("second Alloc did not panic")
		}
	}()
	_ = Alloc[entry](&m, 10)
}
