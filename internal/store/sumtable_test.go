package store

import (
	"math/rand/v2"
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
		h.add(k, sum)
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
