package mobilebackup2

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestIDSetMatchesMap drives idSet and a map with the same random adds, removals, lookups
// and prefix walks (few distinct IDs and prefixes, so each is hit often) and requires the
// same answers.
func TestIDSetMatchesMap(t *testing.T) {
	for seed := range uint64(50) {
		r := rand.New(rand.NewPCG(seed, 1))
		var s idSet
		defer s.free()
		model := map[blobID]bool{}
		randomID := func() blobID {
			var id blobID
			// Few distinct first bytes, at both ends, and second bytes, so that
			// buckets (starts) are shared, empty and at the array's ends.
			id[0] = []byte{0, 1, 2, 255}[r.IntN(4)]
			id[1] = []byte{0, 7, 255}[r.IntN(3)]
			id[19] = byte(r.IntN(40))
			return id
		}
		for step := range 2000 {
			id := randomID()
			switch r.IntN(4) {
			case 0:
				if !model[id] { // the server never adds an entry twice
					s.add(id)
					model[id] = true
				}
			case 1:
				if got := s.remove(id); got != model[id] {
					t.Fatalf("seed %d step %d: remove(%x) = %v, want %v", seed, step, id, got, model[id])
				}
				delete(model, id)
			case 2:
				if got := s.has(id); got != model[id] {
					t.Fatalf("seed %d step %d: has(%x) = %v, want %v", seed, step, id, got, model[id])
				}
			default:
				prefix := []int{-1, 0, 1, 2, 3, 255}[r.IntN(6)]
				var want []blobID
				for id := range model {
					if prefix < 0 || int(id[0]) == prefix {
						want = append(want, id)
					}
				}
				slices.SortFunc(want, func(a, b blobID) int { return slices.Compare(a[:], b[:]) })
				var got []blobID
				_ = s.each(prefix, func(id blobID) error {
					got = append(got, id)
					if r.IntN(2) == 0 {
						s.remove(id)
						delete(model, id)
					}
					return nil
				})
				if !slices.Equal(got, want) {
					t.Fatalf("seed %d step %d: each(%d) visited %x, want %x in order", seed, step, prefix, got, want)
				}
			}
			if s.len() != len(model) {
				t.Fatalf("seed %d step %d: len %d, want %d", seed, step, s.len(), len(model))
			}
		}
	}
}

// TestSortIDs: sortIDs sorts any mix of ids (uniform SHA-1-like ones, and many sharing a
// bucket or falling in the first and last ones) into the order a comparison sort gives, and
// starts marks every bucket's first id.
func TestSortIDs(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	starts := make([]uint32, 1<<16+1)
	for _, n := range []int{0, 1, 2, 1000, 70000} {
		for _, skewed := range []bool{false, true} {
			ids := make([]blobID, n)
			for i := range ids {
				for j := range ids[i] {
					ids[i][j] = byte(r.Uint32())
				}
				if skewed {
					ids[i][0], ids[i][1] = []byte{0, 9, 255}[r.IntN(3)], []byte{0, 255}[r.IntN(2)]
				}
			}
			want := slices.Clone(ids)
			slices.SortFunc(want, func(a, b blobID) int { return slices.Compare(a[:], b[:]) })
			sortIDs(ids, starts)
			if !slices.Equal(ids, want) {
				t.Fatalf("n=%d skewed=%v: not sorted like a comparison sort", n, skewed)
			}
			for p := range starts {
				i := int(starts[p])
				if i > n || (i < n && bucket(ids[i]) < p) || (i > 0 && bucket(ids[i-1]) >= p) {
					t.Fatalf("n=%d skewed=%v: starts[%d] = %d", n, skewed, p, i)
				}
			}
		}
	}
}
