//go:build unix

package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// The clone links files and folders, recreates a symlink as a symlink (never following it),
// and leaves out what no backup holds (a FIFO): the listing's types decide the first two,
// a stat the rest.
func TestLinkSubtreeKeepsEachKindOfEntry(t *testing.T) {
	src, dst := filepath.Join(t.TempDir(), "src"), filepath.Join(t.TempDir(), "dst")
	for _, d := range []string{"ab", "ab/deeper"} {
		if err := os.MkdirAll(filepath.Join(src, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"Manifest.db", "ab/ab01", "ab/deeper/f"} {
		if err := os.WriteFile(filepath.Join(src, f), []byte(f), 0o444); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("ab", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(src, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	// More files than one 64 KiB directory read returns (a record a name of 40 characters
	// takes 64 bytes): the listing is read in several passes, each linked from its buffer.
	many := []string{"Manifest.db", "ab/ab01", "ab/deeper/f"}
	for i := range 2500 {
		f := fmt.Sprintf("ab/ab%038x", i)
		if err := os.WriteFile(filepath.Join(src, f), nil, 0o444); err != nil {
			t.Fatal(err)
		}
		many = append(many, f)
	}
	links := 0
	if err := linkSubtree(context.Background(), src, dst, func() { links++ }); err != nil {
		t.Fatal(err)
	}
	if links != len(many) {
		t.Errorf("linked %d files, want %d", links, len(many))
	}
	for _, f := range many {
		a, err1 := os.Stat(filepath.Join(src, f))
		b, err2 := os.Stat(filepath.Join(dst, f))
		if err1 != nil || err2 != nil || !os.SameFile(a, b) {
			t.Errorf("%s: not the same file in the clone (%v, %v)", f, err1, err2)
		}
	}
	if target, err := os.Readlink(filepath.Join(dst, "link")); err != nil || target != "ab" {
		t.Errorf("symlink in the clone: %q, %v; want a symlink to ab", target, err)
	}
	if fi, err := os.Lstat(filepath.Join(dst, "link")); err == nil && fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("link cloned as %v, want a symlink", fi.Mode())
	}
	if _, err := os.Lstat(filepath.Join(dst, "fifo")); !os.IsNotExist(err) {
		t.Errorf("FIFO in the clone: %v; want it left out", err)
	}
}

// linkOther is the clone's answer to an entry whose type the listing did not give (XFS
// without ftype, some network filesystems give none): it asks the filesystem, and the clone
// links a file, descends into a folder, recreates a symlink and leaves the rest out.
func TestLinkOtherAsksTheType(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "file"), nil, 0o444); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(src, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("file", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(src, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	sfd, err := openDirFd(src)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(sfd)
	for name, want := range map[string]entryType{"file": typeFile, "dir": typeDir, "link": typeOther, "fifo": typeOther} {
		if got, err := linkOther(sfd, src, dst, name); err != nil || got != want {
			t.Errorf("linkOther(%s) = %v, %v; want %v", name, got, err, want)
		}
	}
	if target, err := os.Readlink(filepath.Join(dst, "link")); err != nil || target != "file" {
		t.Errorf("symlink in the clone: %q, %v; want one to file", target, err)
	}
	for _, name := range []string{"file", "dir", "fifo"} {
		if _, err := os.Lstat(filepath.Join(dst, name)); !os.IsNotExist(err) {
			t.Errorf("%s made in the clone by linkOther (%v); linking or descending is the caller's", name, err)
		}
	}
	if _, err := linkOther(sfd, src, dst, "missing"); err == nil {
		t.Error("linkOther of a missing entry: no error")
	}
}
