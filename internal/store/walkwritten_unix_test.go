//go:build unix

package store

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zeebo/xxh3"
)

// The full commit's listing pass hands each file to its sink with what it already worked
// out: whether the name is a blob's and its key, and, only where the streamed table vouches
// for the file, the streamed sum, which the index then takes without a second search. A file
// the table does not vouch for must come without a sum, so that it is looked up or read.
func TestWalkWrittenHandsOnWhatItFound(t *testing.T) {
	s := openStore(t, t.TempDir(), testOptions(&fakeClock{t: epoch}))
	dir := t.TempDir()
	vouched := "ab/ab" + strings.Repeat("1", 38)
	twoSums := "cd/cd" + strings.Repeat("2", 38)
	zeroKey := "00/" + strings.Repeat("0", 40) // a blob whose idKey is 0: never vouched for
	writable := "ef/ef" + strings.Repeat("3", 38)
	plain := "Manifest.db"
	var h streamedHashes
	for _, f := range []string{vouched, twoSums, zeroKey, writable, plain} {
		p := filepath.Join(dir, filepath.FromSlash(f))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f), 0o444); err != nil {
			t.Fatal(err)
		}
		if f == writable {
			if err := os.Chmod(p, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		k, _ := keyOf(fi)
		blob := landedBlob(testUDID, testUDID+"/"+f, fi)
		h.add(sumEntry{key: k, sum: xxh3.Uint128{Hi: 1, Lo: uint64(len(f))}, blob: blob})
		if f == twoSums {
			h.add(sumEntry{key: k, sum: xxh3.Uint128{Hi: 2}, blob: blob})
		}
	}
	got := map[string]writtenFile{}
	if err := s.walkWritten(context.Background(), dir, h.table(), func(w writtenFile) error {
		got[w.rel] = w
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 {
		t.Fatalf("sink heard of %d files, want 5: %v", len(got), got)
	}
	for _, c := range []struct {
		rel            string
		isBlob, summed bool
	}{
		{vouched, true, true},
		{twoSums, true, false},
		{zeroKey, true, false},
		{writable, true, false},
		{plain, false, false},
	} {
		w := got[c.rel]
		if w.isBlob != c.isBlob || w.summed != c.summed {
			t.Errorf("%s: isBlob %v summed %v; want %v, %v", c.rel, w.isBlob, w.summed, c.isBlob, c.summed)
		}
		if c.isBlob && w.blob != idKey(filepath.Base(c.rel)) {
			t.Errorf("%s: blob key %x, want %x", c.rel, w.blob, idKey(filepath.Base(c.rel)))
		}
		if c.summed && w.sum != (xxh3.Uint128{Hi: 1, Lo: uint64(len(c.rel))}) {
			t.Errorf("%s: sum %v, want the one streamed", c.rel, w.sum)
		}
		fi, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(c.rel)))
		if err != nil {
			t.Fatal(err)
		}
		if k, _ := keyOf(fi); w.ino != k.ino || w.size != k.size || w.mtime != k.mtime {
			t.Errorf("%s: stat %d/%d/%d, want %+v", c.rel, w.ino, w.size, w.mtime, k)
		}
	}
}
