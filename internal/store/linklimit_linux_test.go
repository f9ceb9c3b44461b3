package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"snapback/internal/testenv"
)

// A file that has reached its filesystem's link limit (ext4: 65,000) cannot be linked into
// the next backup's folder; the clone copies it instead, with its mode and time, and links
// the rest. A blob shared by that many snapshots is rare, but a backup must not fail on it.
func TestLinkSubtreeCopiesAFileAtItsLinkLimit(t *testing.T) {
	base, n := atLinkLimit(t)
	src, dst := filepath.Join(base, "src"), filepath.Join(base, "dst")
	full, plain := filepath.Join(src, "ab", "full"), filepath.Join(src, "ab", "plain")
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
	a, b := statOf(t, full), statOf(t, filepath.Join(dst, "ab", "full"))
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

// atLinkLimit returns a folder holding src/ab/full, linked from a side folder until the
// filesystem refused with EMLINK, and its link count. The temporary folder is tried first;
// where its filesystem has no limit low enough to reach (tmpfs, XFS), an ext4 loop image.
func atLinkLimit(t *testing.T) (string, int) {
	t.Helper()
	const most = 1 << 17 // above ext4's 65,000 (XFS's is about 2^31: such a folder moves to ext4)
	base := t.TempDir()
	for attempt := range 2 {
		if attempt == 1 {
			if err := os.RemoveAll(base); err != nil {
				t.Fatal(err)
			}
			dir, note := testenv.LoopImage(t, "ext4", 1<<30, 1<<17)
			if strings.HasPrefix(note, "NOT") {
				testenv.Unavailable(t, "%s has no link limit under %d and no ext4 loop image: %s", base, most, note)
			}
			base = dir
		}
		full := filepath.Join(base, "src", "ab", "full")
		side := filepath.Join(base, "side")
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
				return base, i
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Fatal("no link limit reached")
	return "", 0
}
