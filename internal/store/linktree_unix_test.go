//go:build unix

package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"snapback/internal/testenv"
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

// A file that has reached its filesystem's link limit (ext4: 65,000) cannot be linked into
// the next backup's folder; the clone copies it instead, with its mode and time, and links
// the rest. A blob shared by that many snapshots is rare, but a backup must not fail on it.
func TestLinkSubtreeCopiesAFileAtItsLinkLimit(t *testing.T) {
	base := t.TempDir()
	src, dst := filepath.Join(base, "src"), filepath.Join(base, "dst")
	full, n := atLinkLimit(t, &base, &src, &dst)
	plain := filepath.Join(src, "ab", "plain")
	if err := os.WriteFile(plain, []byte("plain"), 0o444); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s holds %d links", full, n)

	links := 0
	if err := linkSubtree(context.Background(), src, dst, func() { links++ }); err != nil {
		t.Fatalf("clone with a file at its link limit: %v", err)
	}
	if links != 2 {
		t.Errorf("hook counted %d files, want 2", links)
	}
	a, _ := os.Stat(full)
	b, err := os.Stat(filepath.Join(dst, "ab", "full"))
	if err != nil {
		t.Fatalf("the file at its link limit is missing from the clone: %v", err)
	}
	if os.SameFile(a, b) {
		t.Error("the clone shares the inode of a file at its link limit; want a copy")
	}
	if got, err := os.ReadFile(filepath.Join(dst, "ab", "full")); err != nil || string(got) != "shared by every snapshot" {
		t.Errorf("copy holds %q (%v)", got, err)
	}
	if b.Mode() != a.Mode() || !b.ModTime().Equal(a.ModTime()) {
		t.Errorf("copy: mode %v, time %v; want the original's %v, %v", b.Mode(), b.ModTime(), a.Mode(), a.ModTime())
	}
	if c, d := statOf(t, plain), statOf(t, filepath.Join(dst, "ab", "plain")); !os.SameFile(c, d) {
		t.Error("the other file was copied, not linked")
	}
}

func statOf(t *testing.T, path string) os.FileInfo {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi
}

// atLinkLimit makes src/ab/full and links it from a side folder until the filesystem refuses
// with EMLINK, and returns its path and link count. The temporary folder is tried first; a
// filesystem without a limit low enough to reach (tmpfs, btrfs across folders) moves base, src
// and dst to an ext4 loop image.
func atLinkLimit(t *testing.T, base, src, dst *string) (string, int) {
	t.Helper()
	const most = 1 << 17 // above ext4's 65,000 and XFS's and btrfs's per-folder limits
	for attempt := range 2 {
		if attempt == 1 {
			dir, note := testenv.LoopImage(t, "ext4", 1<<30, 1<<17)
			if strings.HasPrefix(note, "NOT") {
				testenv.Unavailable(t, "%s has no link limit under %d and no ext4 loop image: %s", *base, most, note)
			}
			*base = dir
			*src, *dst = filepath.Join(dir, "src"), filepath.Join(dir, "dst")
		}
		full := filepath.Join(*src, "ab", "full")
		side := filepath.Join(*base, "side")
		for _, d := range []string{filepath.Dir(full), side} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(full, []byte("shared by every snapshot"), 0o444); err != nil {
			t.Fatal(err)
		}
		when := time.Date(2026, 3, 1, 9, 30, 0, 0, time.UTC)
		if err := os.Chtimes(full, when, when); err != nil {
			t.Fatal(err)
		}
		for i := 1; i < most; i++ {
			err := unix.Link(full, filepath.Join(side, strconv.Itoa(i)))
			if errors.Is(err, unix.EMLINK) {
				return full, i
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if err := os.RemoveAll(*base); err != nil && attempt == 0 {
			t.Fatal(err)
		}
	}
	t.Fatal("no link limit reached")
	return "", 0
}
