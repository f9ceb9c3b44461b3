//go:build linux

package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// JournaledExt4 returns a folder on a fresh journaled ext4 loop image of the given size
// (bytes, sparse) with room for inodes files, unmounted at cleanup, and a note saying what it
// is. Benchmarks write there because the CI machines' root ext4 has no journal, where file
// creation after large deletions is dominated by the kernel's scan of recently deleted
// inodes (issue #16). Without root (mount), mkfs.ext4 or mount it returns a temporary folder
// and a note that says so: figures are still printed, labelled.
//
// The journal is 1 GB, what mkfs.ext4 gives any disk of 128 GB or more (here: 16 GB -> 128 MB,
// 64 GB -> 512 MB, 200 GB -> 1 GB), so every real backup disk. A small image would get
// 16-64 MB, and a 100,000-file hard-link clone then stalls in jbd2_log_do_checkpoint waiting
// for the journal to drain (perf sched: half its sleeps), which a backup disk never does.
func JournaledExt4(tb testing.TB, bytes, inodes int64) (dir, note string) {
	tb.Helper()
	return LoopImage(tb, "ext4", bytes, inodes)
}

// LoopImage is JournaledExt4 for filesystem fstype: "ext4" (as JournaledExt4), "btrfs" or
// "xfs", so a benchmark can measure the filesystems NAS boxes and Fedora or openSUSE desktops
// use. Those two get mkfs's defaults: inodes need no sizing there, but XFS sizes its log by
// the filesystem (a few GB image gets a smaller log than a real disk), which the note says.
func LoopImage(tb testing.TB, fstype string, bytes, inodes int64) (dir, note string) {
	tb.Helper()
	// Checked first: a misspelt name must not fall back to the temporary folder quietly.
	if fstype != "ext4" && fstype != "btrfs" && fstype != "xfs" {
		tb.Fatalf("LoopImage: unknown filesystem %q (ext4, btrfs or xfs)", fstype)
	}
	tmp := tb.TempDir()
	if os.Geteuid() != 0 {
		return tmp, "NOT a loop image (needs root): the temporary folder's filesystem"
	}
	for _, tool := range []string{"mkfs." + fstype, "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			return tmp, "NOT a loop image (" + tool + " missing): the temporary folder's filesystem"
		}
	}
	img := filepath.Join(tmp, "bench.img")
	mnt := filepath.Join(tmp, "mnt")
	const journalMB = 1024
	bytes = max(bytes, 1<<30)
	if fstype == "ext4" {
		// mkfs.ext4 refuses a journal of more than about half the filesystem ("Total
		// journal size too big"): 2 GB with a 1 GB journal fails, 3 GB works.
		bytes = max(bytes+journalMB<<20, 3*journalMB<<20)
	}
	if err := os.Mkdir(mnt, 0o755); err != nil {
		tb.Fatal(err)
	}
	f, err := os.Create(img)
	if err != nil {
		tb.Fatal(err)
	}
	if err := f.Truncate(bytes); err != nil {
		tb.Fatal(err)
	}
	f.Close()
	var mkfs []string
	switch fstype {
	case "ext4":
		n := strconv.FormatInt(max(inodes, 65536), 10)
		mkfs = []string{"-q", "-F", "-O", "has_journal", "-J", "size=" + strconv.Itoa(journalMB), "-N", n}
	default: // btrfs, xfs
		mkfs = []string{"-q", "-f"}
	}
	if out, err := exec.Command("mkfs."+fstype, append(mkfs, img)...).CombinedOutput(); err != nil {
		return tmp, fmt.Sprintf("NOT a loop image (mkfs.%s: %v: %s)", fstype, err, strings.TrimSpace(string(out)))
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		return tmp, fmt.Sprintf("NOT a loop image (mount: %v: %s)", err, strings.TrimSpace(string(out)))
	}
	tb.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			tb.Logf("umount %s: %v: %s", mnt, err, out)
		}
	})
	if fstype != "ext4" {
		return mnt, fmt.Sprintf("%s loop image (%.1f GB, sparse, mkfs defaults: a smaller log than a large disk's)", fstype, float64(bytes)/1e9)
	}
	return mnt, fmt.Sprintf("journaled ext4 loop image (%.1f GB, sparse, %d MB journal)", float64(bytes)/1e9, journalMB)
}
