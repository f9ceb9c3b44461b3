package mobilebackup2

import (
	"bytes"
	"slices"

	"snapback/internal/offheap"
)

// idSet is the set of redirected uploads not yet moved (redirect.go), 20 bytes an entry in
// one pointer-free array. A Go map of 20-byte keys raised the peak RSS of a million-file
// first backup from 176 MB to 224 MB, the same entries in a heap slice to 211 MB: the
// garbage collector lets the heap grow to twice what is live, so 20 MB of entries cost
// about 40 MB more. The array is therefore outside the Go heap (internal/offheap) and
// costs its 20 bytes an entry.
//
// Entries are appended while the device uploads and looked up while it moves, so the set
// sorts itself only when a lookup follows new entries: once per backup for a device that
// uploads everything and then moves it. Removed entries are marked, not moved, and dropped
// at the next sort.
type idSet struct {
	mem    offheap.Mem
	ids    []blobID // ids[:sorted] ascending; ids[sorted:] appended since; in mem
	sorted int
	dead   []uint64 // bit i set: ids[i] (in the sorted part) is removed
	// starts[p] is the index of the first sorted entry whose first two bytes are p or more
	// (1<<16 + 1 entries, built by settle): a lookup searches only its bucket, about 16
	// entries at a million (ids are SHA-1 sums), where a binary search of the whole array
	// cost a cache miss per step (5.8% of a 200,000-file full backup's user time).
	starts []uint32
	live   int
	// sorts counts sorts that took in new entries; a device that interleaves uploads and
	// lookups would make each one sort everything (see manySorts).
	sorts int
}

// manySorts is how many sorts a run may make before no more uploads are redirected, so a
// device interleaving uploads with lookups costs at most this many sorts of the set.
const manySorts = 64

// maxIDs bounds the set (80 MB of address space): a device with more files than this
// (real ones hold up to about 1.3 million) has the rest of its uploads take the usual way.
const maxIDs = 4 << 20

// full reports whether no entry can be added.
func (s *idSet) full() bool { return len(s.ids) >= maxIDs }

// add appends id; the caller checked full first.
func (s *idSet) add(id blobID) {
	if s.ids == nil {
		s.ids = offheap.Alloc[blobID](&s.mem, maxIDs)
	}
	s.ids = append(s.ids, id)
	s.live++
}

// free releases the set's memory; the set is empty and usable again afterwards.
func (s *idSet) free() {
	s.mem.Free()
	*s = idSet{}
}

func (s *idSet) len() int { return s.live }

// settle sorts the set, dropping removed entries first.
func (s *idSet) settle() {
	if s.sorted == len(s.ids) {
		return
	}
	if s.live < len(s.ids) {
		n := 0
		for i, id := range s.ids {
			if i >= s.sorted || s.dead[i/64]&(1<<(i%64)) == 0 {
				s.ids[n] = id
				n++
			}
		}
		s.ids = s.ids[:n]
	}
	if s.starts == nil {
		s.starts = make([]uint32, 1<<16+1)
	}
	sortIDs(s.ids, s.starts)
	s.sorted = len(s.ids)
	s.dead = make([]uint64, (len(s.ids)+63)/64)
	s.sorts++
}

// sortIDs sorts ids and sets starts[p] to the index of the first id whose bucket (first two
// bytes) is p or more. ids are SHA-1 sums, so the 65,536 buckets are about evenly filled:
// one American-flag pass puts every id in its bucket in place, and only the buckets, about
// n/65,536 ids each, are sorted by comparison. In a 200,000-file full backup this took the
// sort from 2.2% of the client's user CPU samples to 1.3% (perf); the pass's swaps are
// cache misses too, so it is not free.
func sortIDs(ids []blobID, starts []uint32) {
	clear(starts)
	for _, id := range ids {
		starts[bucket(id)+1]++
	}
	for p := 1; p < len(starts); p++ {
		starts[p] += starts[p-1]
	}
	next := slices.Clone(starts[:len(starts)-1]) // where each bucket's next id goes
	for b := range next {
		for end := starts[b+1]; next[b] < end; {
			t := bucket(ids[next[b]])
			if t == b {
				next[b]++
				continue
			}
			ids[next[b]], ids[next[t]] = ids[next[t]], ids[next[b]]
			next[t]++
		}
	}
	for b := range next {
		if lo, hi := starts[b], starts[b+1]; hi-lo > 1 {
			slices.SortFunc(ids[lo:hi], func(a, b blobID) int { return bytes.Compare(a[:], b[:]) })
		}
	}
}

// bucket is the index of id's bucket in starts: its first two bytes.
func bucket(id blobID) int { return int(id[0])<<8 | int(id[1]) }

// index returns where id is in the sorted set, if it is there and not removed.
func (s *idSet) index(id blobID) (int, bool) {
	if s.live == 0 {
		return 0, false
	}
	s.settle()
	b := bucket(id)
	lo, hi := int(s.starts[b]), int(s.starts[b+1])
	end := hi
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if bytes.Compare(s.ids[m][:], id[:]) < 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == end || s.ids[lo] != id || s.dead[lo/64]&(1<<(lo%64)) != 0 {
		return 0, false
	}
	return lo, true
}

func (s *idSet) has(id blobID) bool {
	_, ok := s.index(id)
	return ok
}

// remove takes id out of the set and reports whether it was in it.
func (s *idSet) remove(id blobID) bool {
	i, ok := s.index(id)
	if ok {
		s.dead[i/64] |= 1 << (i % 64)
		s.live--
	}
	return ok
}

// each calls f with every entry whose first byte is prefix (every entry if prefix < 0), in
// order, stopping at f's first error. f may remove the entry it is given, nothing else.
func (s *idSet) each(prefix int, f func(blobID) error) error {
	if s.live == 0 {
		return nil
	}
	s.settle()
	i := 0
	if prefix >= 0 {
		i = int(s.starts[prefix<<8])
	}
	for ; i < len(s.ids) && (prefix < 0 || int(s.ids[i][0]) == prefix); i++ {
		if s.dead[i/64]&(1<<(i%64)) != 0 {
			continue
		}
		if err := f(s.ids[i]); err != nil {
			return err
		}
	}
	return nil
}
