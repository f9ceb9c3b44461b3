package store

import (
	"bufio"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zeebo/xxh3"
)

// TestSumTableMatchesMap: the sorted table answers every lookup as a map of the same
// entries does, keys that differ in one field only are told apart, and a key streamed twice
// with two sums has none (the commit then reads the file).
func TestSumTableMatchesMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var h streamedHashes
	want := map[blobKey]xxh3.Uint128{}
	conflicting := map[blobKey]bool{}
	var keys []blobKey
	for i := 0; i < 20000; i++ {
		// Few distinct values per field, so keys often share one or two of them.
		k := blobKey{ino: uint64(rng.IntN(40)), size: int64(rng.IntN(40)), mtime: int64(rng.IntN(40))}
		sum := xxh3.Uint128{Hi: uint64(rng.IntN(3)), Lo: k.ino}
		if old, ok := want[k]; ok && old != sum {
			conflicting[k] = true
		}
		want[k] = sum
		keys = append(keys, k)
		h.add(sumEntry{key: k, sum: sum})
	}
	tab := h.table()
	for i := 0; i < 40000; i++ {
		k := blobKey{ino: uint64(rng.IntN(42)), size: int64(rng.IntN(42)), mtime: int64(rng.IntN(42))}
		if i%2 == 0 {
			k = keys[rng.IntN(len(keys))]
		}
		got, ok := tab.lookup(k)
		w, present := want[k]
		switch {
		case conflicting[k]:
			if ok {
				t.Fatalf("%+v was streamed with two sums; lookup found %v", k, got)
			}
		case ok != present || got != w:
			t.Fatalf("lookup(%+v) = %v, %v; want %v, %v", k, got, ok, w, present)
		}
	}
	if len(conflicting) == 0 {
		t.Fatal("no key was streamed with two sums; the test lost its point")
	}
}

// TestSumTableBuckets: with the bucket index in use (64 entries or more), every streamed
// key is found whatever the spread of inode numbers (dense, two groups far apart, one
// outlier at the top of the range), and keys just outside or between them are not.
func TestSumTableBuckets(t *testing.T) {
	spreads := map[string]func(i int) uint64{
		"dense":      func(i int) uint64 { return 12 + uint64(i) },
		"two groups": func(i int) uint64 { return uint64(i%2)<<40 + uint64(i) },
		"outlier": func(i int) uint64 {
			if i == 0 {
				return 1<<64 - 1
			}
			return 5000 + 3*uint64(i)
		},
	}
	for name, ino := range spreads {
		var h streamedHashes
		for i := 0; i < 5000; i++ {
			h.add(sumEntry{key: blobKey{ino: ino(i), size: int64(i % 7), mtime: 1}, sum: xxh3.Uint128{Lo: uint64(i)}})
		}
		tab := h.table()
		if tab.starts == nil {
			t.Fatalf("%s: no bucket index for %d entries", name, len(tab.e))
		}
		for i := 0; i < 5000; i++ {
			k := blobKey{ino: ino(i), size: int64(i % 7), mtime: 1}
			if sum, ok := tab.lookup(k); !ok || sum.Lo != uint64(i) {
				t.Fatalf("%s: lookup(%+v) = %v, %v; want %d", name, k, sum, ok, i)
			}
			k.mtime = 2
			if _, ok := tab.lookup(k); ok {
				t.Fatalf("%s: found %+v, never streamed", name, k)
			}
		}
		for _, absent := range []uint64{0, 11, ino(4999) + 1, 1<<64 - 2} { // size 99: no entry has it
			if _, ok := tab.lookup(blobKey{ino: absent, size: 99, mtime: 1}); ok {
				t.Fatalf("%s: found inode %d, never streamed", name, absent)
			}
		}
	}
}

// TestHashLinesRoundTrip: what writeHashLine writes, readHashLines reads back unchanged,
// including extreme numbers, a negative mtime and a path with spaces; a line longer than
// the writer's buffer is written whole.
func TestHashLinesRoundTrip(t *testing.T) {
	want := []hashEntry{
		{key: blobKey{ino: 1, size: 0, mtime: 0}, sum: xxh3.Uint128{}, rel: "ab/ab01"},
		{key: blobKey{ino: 1<<64 - 1, size: 1<<63 - 1, mtime: -1 << 63}, sum: xxh3.Uint128{Hi: 1<<64 - 1, Lo: 0x0102030405060708}, rel: "Manifest.db"},
		{key: blobKey{ino: 42, size: 7, mtime: -1700000000123456789}, sum: xxh3.Uint128{Hi: 9, Lo: 10}, rel: "a dir/with spaces/ünïcode"},
		{key: blobKey{ino: 43, size: 8, mtime: 5}, sum: xxh3.Uint128{Hi: 11}, rel: strings.Repeat("x/", 100) + "long"},
	}
	path := filepath.Join(t.TempDir(), "hashes")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriterSize(f, 64) // smaller than the long line
	for _, e := range want {
		writeHashLine(bw, e)
	}
	if err := errors.Join(bw.Flush(), f.Close()); err != nil {
		t.Fatal(err)
	}
	got, err := readHashLines(path, false)
	if err != nil {
		t.Fatal(err)
	}
	if got.lines != len(want) {
		t.Fatalf("read %d lines; want %d", got.lines, len(want))
	}
	for _, e := range want {
		if g := got.byInode[e.key.ino]; g != e {
			t.Errorf("read back %+v; want %+v", g, e)
		}
	}
}

// TestStreamedFreedDropsLaterSums: once the run ended (free), a sum the engine still hands
// over is dropped instead of written to released memory, and the table is empty.
func TestStreamedFreedDropsLaterSums(t *testing.T) {
	var h streamedHashes
	h.add(sumEntry{key: blobKey{ino: 1}, sum: xxh3.Uint128{Lo: 1}})
	h.free()
	h.add(sumEntry{key: blobKey{ino: 2}, sum: xxh3.Uint128{Lo: 2}})
	h.free()
	if tab := h.table(); len(tab.e) != 0 {
		t.Fatalf("table after free holds %d sums", len(tab.e))
	}
}

// TestSumTableLanded: landed answers for an inode only when exactly one entry has it, under
// the asked blob name, and no file landed unhashed; among thousands of entries (buckets).
func TestSumTableLanded(t *testing.T) {
	var h streamedHashes
	for i := uint64(0); i < 3000; i++ {
		h.add(sumEntry{key: blobKey{ino: 10 + 2*i, size: 1, mtime: 1}, blob: 100 + i})
	}
	h.add(sumEntry{key: blobKey{ino: 12, size: 2, mtime: 1}, blob: 101})    // inode 12 again
	h.add(sumEntry{key: blobKey{ino: 1e6, size: 1, mtime: 1}, blob: 7})     // same key twice,
	h.add(sumEntry{key: blobKey{ino: 1e6, size: 1, mtime: 1}, blob: 8})     // under two names
	h.add(sumEntry{key: blobKey{ino: 1e6 + 2, size: 1, mtime: 1}, blob: 0}) // not a blob name
	// One name uploaded three times on one reused inode: 100 bytes, then 200 bytes twice
	// within one mtime tick with two contents. The two last have no sum; the first must not
	// be taken for the file that is there.
	h.add(sumEntry{key: blobKey{ino: 2e6, size: 100, mtime: 1}, sum: xxh3.Uint128{Lo: 1}, blob: 9})
	h.add(sumEntry{key: blobKey{ino: 2e6, size: 200, mtime: 2}, sum: xxh3.Uint128{Lo: 2}, blob: 9})
	h.add(sumEntry{key: blobKey{ino: 2e6, size: 200, mtime: 2}, sum: xxh3.Uint128{Lo: 3}, blob: 9})
	h.add(sumEntry{key: blobKey{ino: 3e6, size: 5, mtime: 3}, sum: xxh3.Uint128{Hi: 5, Lo: 6}, blob: 11})
	tab := h.table()
	if _, ok := tab.lookup(blobKey{ino: 2e6, size: 200, mtime: 2}); ok {
		t.Error("lookup found a sum for a key streamed with two sums")
	}
	if e, ok := tab.landed(10+2*2999, 100+2999); !ok || e.key != (blobKey{ino: 10 + 2*2999, size: 1, mtime: 1}) {
		t.Fatalf("landed(last) = %+v, %v", e, ok)
	}
	// The commit takes the sum from landed, without a lookup: it must be the one streamed.
	if e, ok := tab.landed(3e6, 11); !ok || e.sum != (xxh3.Uint128{Hi: 5, Lo: 6}) {
		t.Fatalf("landed(3e6, 11) = %+v, %v; want the streamed sum {5 6}", e, ok)
	}
	for _, c := range []struct {
		ino, blob uint64
		why       string
	}{
		{12, 101, "two entries with the inode"},
		{14, 101, "another blob name"},
		{11, 101, "an inode never streamed"},
		{1e6, 7, "one key under two names"},
		{1e6 + 2, 0, "no blob name"},
		{2e6, 9, "an older upload of a reused inode beside a key with two sums"},
	} {
		if k, ok := tab.landed(c.ino, c.blob); ok {
			t.Errorf("landed(%d, %d) = %+v: %s", c.ino, c.blob, k, c.why)
		}
	}
	h.landedUnhashed()
	if _, ok := h.table().landed(10, 100); ok {
		t.Error("landed answered after a file landed unhashed")
	}
}
