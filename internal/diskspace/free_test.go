package diskspace

import (
	"errors"
	"io/fs"
	"path/filepath"
	"testing"
)

func TestFree(t *testing.T) {
	n, err := Free(t.TempDir())
	if err != nil || n <= 0 {
		t.Fatalf("Free of a temporary folder = %d, %v; want some space", n, err)
	}
	if _, err := Free(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Free of a missing folder: %v, want fs.ErrNotExist", err)
	}
}
