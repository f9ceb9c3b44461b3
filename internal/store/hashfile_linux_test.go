package store

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Hashing a stored file (commit, scrub, verify --data) leaves its access time alone, where
// a plain read of a file in the same state rewrites it (relatime: the access time is older
// than the change time, as after every link, chmod or rename the store makes).
func TestHashFileLeavesAccessTime(t *testing.T) {
	dir := t.TempDir()
	old := time.Now().Add(-48 * time.Hour)
	atime := func(p string) time.Time {
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		return time.Unix(st.Atim.Unix())
	}
	mk := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("stored content"), 0o444); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, old, time.Now()); err != nil {
			t.Fatal(err)
		}
		return p
	}
	plain, hashed := mk("plain"), mk("hashed")
	if _, err := os.ReadFile(plain); err != nil {
		t.Fatal(err)
	}
	if atime(plain).Equal(atime(hashed)) {
		t.Fatalf("a plain read did not update the access time on %s: this filesystem cannot tell", dir)
	}
	if _, _, err := hashFile(hashed, make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
	if got := atime(hashed); !got.Equal(old.Truncate(time.Second)) && got.Sub(old).Abs() > time.Second {
		t.Fatalf("hashFile updated the access time: %v, was %v", got, old)
	}
}
