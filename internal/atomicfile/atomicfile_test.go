package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteReplacesContentAndLeavesNoTemp(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "state.json")
	if err := WriteFile(p, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(p, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(p)
	if string(got) != "new" {
		t.Fatalf("content = %q, want %q", got, "new")
	}
	fi, _ := os.Stat(p)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("perm = %v, want 0600", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("dir has %d entries, want only the target", len(entries))
	}
}

func TestFailedFillKeepsOldContent(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := WriteFile(p, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := Write(p, 0o644, func(w io.Writer) error {
		w.Write([]byte("partial"))
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	got, _ := os.ReadFile(p)
	if string(got) != "keep" {
		t.Fatalf("content = %q, want old content kept", got)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temp file left behind: %d entries", len(entries))
	}
}

// Both ways of replacing a file leave a hard link to the old one (a committed snapshot's
// file, in the store's staging folder) as it was, and leave no temp file.
func TestWriteDoesNotTouchHardLinkedOldFile(t *testing.T) {
	for name, replace := range map[string]func(string, []byte, os.FileMode) error{
		"WriteFile": WriteFile, "WriteFileFlushedLater": WriteFileFlushedLater,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "f")
			WriteFile(p, []byte("v1"), 0o644)
			link := filepath.Join(dir, "snapshot-link")
			if err := os.Link(p, link); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(link, 0o444); err != nil { // committed files are read-only
				t.Fatal(err)
			}
			if err := replace(p, []byte("v2"), 0o644); err != nil {
				t.Fatal(err)
			}
			if got, _ := os.ReadFile(link); string(got) != "v1" {
				t.Fatalf("hard link sees %q, want v1 unchanged", got)
			}
			if got, _ := os.ReadFile(p); string(got) != "v2" {
				t.Fatalf("replaced file holds %q, want v2", got)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 2 {
				t.Fatalf("%d entries in the folder, want the file and the link only", len(entries))
			}
		})
	}
}
