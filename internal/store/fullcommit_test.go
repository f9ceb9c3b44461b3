//go:build linux

package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"snapback/internal/backupfmt"
	"snapback/internal/failure"
)

// freshOptions are testOptions that count the commits that took the full-backup path
// (fullcommit.go).
func freshOptions(clock *fakeClock, fresh *int) Options {
	return countingOptions(clock, "commit:fresh", fresh)
}

func runFullBackup(t *testing.T, s *Store, dev *fakeDevice) Snapshot {
	t.Helper()
	return runBackupWith(t, s, dev, BeginOptions{Full: true})
}

// A full backup's commit takes sizes from its one listing pass; every record (the new
// latest, the previous latest whose sizes the journal carries, older ones) must be what
// measuring the folders says, and the content index must cover every committed file.
func TestFullCommitSizesMatchMeasure(t *testing.T) {
	fresh := 0
	s := openStore(t, t.TempDir(), freshOptions(&fakeClock{t: epoch, step: time.Hour}, &fresh))
	dev := newFakeDevice(testUDID, 80, 700, 17)
	runBackup(t, s, dev) // the first backup: full
	checkSizes(t, s, 0)
	dev.change(10)
	runBackup(t, s, dev) // incremental
	checkSizes(t, s, 1)
	dev.change(10)
	runFullBackup(t, s, dev) // forced full over an existing store
	checkSizes(t, s, 2)
	dev.change(10)
	runBackup(t, s, dev) // incremental after it
	checkSizes(t, s, 3)
	if fresh != 2 {
		t.Fatalf("%d of 2 full commits took the full-backup path", fresh)
	}
	list := mustList(t, s)
	if full := list[2]; full.UniqueSize == 0 || full.Kind != KindFull {
		t.Errorf("forced full backup: kind %s unique %d", full.Kind, full.UniqueSize)
	}
	rep, err := s.VerifyData(context.Background(), testUDID)
	if err != nil || rep.Unindexed != 0 || len(rep.Damaged) != 0 {
		t.Fatalf("VerifyData: %+v, %v", rep, err)
	}
	// With the sums the engine computed while streaming, the index holds those sums (a wrong
	// one would show as damage): the commit must not have read the files again.
}

// The full-backup verify must still refuse a missing blob, a short one and one whose row
// says another size; the old stat-based checks found these, the listing pass must too.
func TestFullVerifyRefuses(t *testing.T) {
	blobOf := func(n string) string { return backupfmt.BlobPath("", backupfmt.FileID("HomeDomain", n)) }
	cases := map[string]func(t *testing.T, dir string){
		"blob missing": func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, blobOf("Library/f000003"))); err != nil {
				t.Fatal(err)
			}
		},
		"blob short": func(t *testing.T, dir string) {
			if err := writeRenamed(filepath.Join(dir, blobOf("Library/f000004")), []byte("short")); err != nil {
				t.Fatal(err)
			}
		},
		"blob truncated in place": func(t *testing.T, dir string) {
			if err := os.Truncate(filepath.Join(dir, blobOf("Library/f000005")), 3); err != nil {
				t.Fatal(err)
			}
		},
		"every blob missing": func(t *testing.T, dir string) {
			// The listing then finds no blob at all: the serial row pass must still
			// compare (an empty key list once read as "listing not done yet").
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				if e.IsDir() && len(e.Name()) == 2 {
					if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
						t.Fatal(err)
					}
				}
			}
		},
		"blob replaced by a folder": func(t *testing.T, dir string) {
			p := filepath.Join(dir, blobOf("Library/f000006"))
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(p, 0o755); err != nil {
				t.Fatal(err)
			}
		},
	}
	for name, breakIt := range cases {
		for _, first := range []bool{true, false} {
			for _, serial := range []bool{false, true} {
				label := name + "/forced"
				if first {
					label = name + "/first"
				}
				t.Run(fmt.Sprintf("%s/serial=%v", label, serial), func(t *testing.T) {
					fresh := 0
					opts := freshOptions(&fakeClock{t: epoch, step: time.Hour}, &fresh)
					opts.serialVerify = serial
					s := openStore(t, t.TempDir(), opts)
					dev := newFakeDevice(testUDID, 40, 500, 5)
					if !first {
						runBackup(t, s, dev)
						fresh = 0
					}
					r, err := s.Begin(context.Background(), testUDID, BeginOptions{Full: !first})
					if err != nil {
						t.Fatal(err)
					}
					defer r.Abort()
					if err := dev.backup(r.Root(), nil); err != nil {
						t.Fatal(err)
					}
					breakIt(t, r.Dir())
					index := s.l.hashes(testUDID)
					before, _ := os.ReadFile(index)
					_, err = r.Commit(context.Background(), CommitMeta{})
					var ve *VerifyError
					if !errors.As(err, &ve) {
						t.Fatalf("Commit err = %v, want a VerifyError", err)
					}
					// The lines the listing pass appended for the refused backup are taken back.
					after, err := os.ReadFile(index)
					if first && !errors.Is(err, fs.ErrNotExist) {
						t.Errorf("a refused first backup left a content index (%d bytes, %v)", len(after), err)
					}
					if !first && (err != nil || !bytes.Equal(after, before)) {
						t.Errorf("content index after a refused backup: %d bytes (%v), %d before", len(after), err, len(before))
					}
					if fresh != 1 {
						t.Fatalf("the commit did not take the full-backup path")
					}
					// The file is named with its domain and path, though the row pass kept
					// only keys and sizes while the listing ran beside it.
					if !strings.Contains(ve.Error(), "(HomeDomain-Library/f00000") {
						t.Errorf("VerifyError %q does not name the file", ve)
					}
					t.Log(ve)
					// The next backup must still commit, indexed and undamaged.
					if err := r.Abort(); err != nil {
						t.Fatal(err)
					}
					runFullBackup(t, s, dev)
					checkSizes(t, s, len(mustList(t, s))-1)
					rep, err := s.VerifyData(context.Background(), testUDID)
					if err != nil || rep.Unindexed != 0 || len(rep.Damaged) != 0 {
						t.Fatalf("VerifyData after the refused run: %+v, %v", rep, err)
					}
				})
			}
		}
	}
}

// A file the device could not read (an exception) may be missing or short in a full backup:
// the commit records it instead of refusing.
func TestFullCommitExceptions(t *testing.T) {
	for _, serial := range []bool{false, true} {
		t.Run(fmt.Sprintf("serial=%v", serial), func(t *testing.T) {
			fresh := 0
			s, r := firstRunStaged(t, serial, &fresh)
			missing := backupfmt.FileID("HomeDomain", "Library/f000007")
			short := backupfmt.FileID("HomeDomain", "Library/f000008")
			fine := backupfmt.FileID("HomeDomain", "Library/f000009")
			if err := os.Remove(backupfmt.BlobPath(r.Dir(), missing)); err != nil {
				t.Fatal(err)
			}
			if err := writeRenamed(backupfmt.BlobPath(r.Dir(), short), []byte("x")); err != nil {
				t.Fatal(err)
			}
			snap, err := r.Commit(context.Background(), CommitMeta{Exceptions: []Exception{{FileID: missing}, {FileID: short}, {FileID: fine}}})
			if err != nil {
				t.Fatal(err)
			}
			if fresh != 1 {
				t.Fatalf("the commit did not take the full-backup path")
			}
			got := map[string]bool{}
			for _, e := range snap.Exceptions {
				got[e.FileID] = true
			}
			if !got[missing] || !got[short] || got[fine] || len(got) != 2 {
				t.Fatalf("exceptions recorded: %+v; want the missing and the short one only", snap.Exceptions)
			}
			checkSizes(t, s, 0)
		})
	}
}

// A full backup's commit cancelled while its listing pass runs beside the row pass returns
// the cancellation (not a verify error, not a hang), takes back its index lines, and the
// next run commits.
func TestFullCommitCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	listing := false
	opts := testOptions(&fakeClock{t: epoch, step: time.Hour})
	opts.hook = func(p string) {
		switch {
		case p == "commit:fresh":
			listing = true
		case listing && p == "verify":
			cancel() // the first directory of the listing, or the row pass's first step
		}
	}
	s := openStore(t, t.TempDir(), opts)
	dev := newFakeDevice(testUDID, 40, 500, 5)
	r, err := s.Begin(context.Background(), testUDID, BeginOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := dev.backup(r.Root(), nil); err != nil {
		t.Fatal(err)
	}
	_, err = r.Commit(ctx, CommitMeta{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Commit err = %v, want the cancellation", err)
	}
	if _, err := os.Stat(s.l.hashes(testUDID)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a cancelled first backup left a content index: %v", err)
	}
	if err := r.Abort(); err != nil {
		t.Fatal(err)
	}
	runBackup(t, s, dev) // the hook only cancels ctx, which this run does not use
	checkSizes(t, s, 0)
	if rep, err := s.VerifyData(context.Background(), testUDID); err != nil || rep.Unindexed != 0 || len(rep.Damaged) != 0 {
		t.Fatalf("verify --data after the cancelled run: %+v, %v", rep, err)
	}
}

// The commit indexes the sums the engine streamed instead of reading the files again, for a
// full backup (the listing pass) and an incremental one (the written files) alike, and a file
// hashed twice under the same key with two sums is indexed with what is on disk. Proof that
// the streamed sums were used: one deliberately wrong sum shows up as damage in verify --data.
func TestCommitIndexesStreamedSums(t *testing.T) {
	for _, full := range []bool{true, false} {
		t.Run(fmt.Sprintf("full=%v", full), func(t *testing.T) {
			s := openStore(t, t.TempDir(), testOptions(&fakeClock{t: epoch, step: time.Hour}))
			dev := newFakeDevice(testUDID, 40, 500, 5)
			if !full {
				runBackup(t, s, dev)
				dev.change(10) // adds Library/g001-000000 … 000003
			}
			r, err := s.Begin(context.Background(), testUDID, BeginOptions{Full: full})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Abort()
			if err := dev.backup(r.Root(), nil); err != nil {
				t.Fatal(err)
			}
			newHash, hashed := r.ContentHash()
			stream := func(name string, content []byte) {
				p := filepath.Join(r.Dir(), backupfmt.BlobPath("", backupfmt.FileID("HomeDomain", name)))
				// Read-only with one link, as the engine lands an upload: the full commit
				// then takes the file's stat and its sum from what was streamed (landed).
				if err := os.Chmod(p, 0o444); err != nil {
					t.Fatal(err)
				}
				fi, err := os.Lstat(p)
				if err != nil {
					t.Fatal(err)
				}
				h := newHash()
				h.Write(content)
				hashed(testUDID+"/"+filepath.ToSlash(backupfmt.BlobPath("", backupfmt.FileID("HomeDomain", name))), fi, h.Sum(nil))
			}
			content := func(name string) []byte {
				b, err := os.ReadFile(filepath.Join(r.Dir(), backupfmt.BlobPath("", backupfmt.FileID("HomeDomain", name))))
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
			wrong, twice, right := "Library/g001-000000", "Library/g001-000001", "Library/g001-000002"
			if full {
				wrong, twice, right = "Library/f000003", "Library/f000004", "Library/f000005"
			}
			stream(right, content(right))
			stream(wrong, []byte("not what was written"))
			stream(twice, []byte("hashed before a rewrite"))
			stream(twice, content(twice))
			if _, err := r.Commit(context.Background(), CommitMeta{}); err != nil {
				t.Fatal(err)
			}
			rep, err := s.VerifyData(context.Background(), testUDID)
			if failure.ClassOf(err) != failure.Damaged {
				t.Fatalf("verify --data: %v, want the wrongly streamed file damaged", err)
			}
			want := backupfmt.BlobPath("", backupfmt.FileID("HomeDomain", wrong))
			if len(rep.Damaged) != 1 || filepath.FromSlash(rep.Damaged[0].Path) != want || rep.Unindexed != 0 {
				t.Fatalf("verify --data: %+v; want only %s damaged (its streamed sum was wrong)", rep, want)
			}
		})
	}
}

// TestFreshListingFreedOnFailure: when the listing pass succeeded but what follows it in the
// same pass failed (the content index write, on a full disk), its off-heap blob list is
// still released, serial or beside the row pass: nothing else ever would.
func TestFreshListingFreedOnFailure(t *testing.T) {
	for _, serial := range []bool{false, true} {
		fresh := 0
		s, r := firstRunStaged(t, serial, &fresh)
		var listed *freshTally
		indexFailed := errors.New("content index: no space left on device")
		_, _, err := s.verifyFreshPasses(context.Background(), r.Dir(), testUDID, nil, 40, func() (*freshTally, error) {
			t, err := s.listFresh(context.Background(), r.Dir(), 40, sumTable{}, func(hashEntry) {})
			listed = t
			if err != nil {
				return nil, err
			}
			return t, indexFailed
		})
		if !errors.Is(err, indexFailed) {
			t.Fatalf("serial=%v: err = %v; want the index failure", serial, err)
		}
		if listed == nil || listed.u.Files == 0 {
			t.Fatalf("serial=%v: the listing pass listed nothing", serial)
		}
		if listed.blobs != nil { // freeBlobs drops it with the mapping
			t.Errorf("serial=%v: the failed pass's blob list is still held", serial)
		}
		if err := r.Abort(); err != nil {
			t.Fatal(err)
		}
	}
}

// firstRunStaged opens a store that counts full-backup commits in fresh (with the row pass
// serial or beside the listing) and begins a first run whose staging folder holds a fake
// device's 40-file backup; the run is aborted when the test ends unless it finished.
func firstRunStaged(t *testing.T, serial bool, fresh *int) (*Store, *Run) {
	t.Helper()
	opts := freshOptions(&fakeClock{t: epoch, step: time.Hour}, fresh)
	opts.serialVerify = serial
	s := openStore(t, t.TempDir(), opts)
	r, err := s.Begin(context.Background(), testUDID, BeginOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Abort() })
	if err := newFakeDevice(testUDID, 40, 500, 5).backup(r.Root(), nil); err != nil {
		t.Fatal(err)
	}
	return s, r
}

// TestFullCommitTakesTheUploadsStat: a full commit takes a blob's size from the fstat its
// upload reported instead of asking the filesystem again, but only where that report must
// still be true (sumTable.landed): one upload with that inode, under that blob name, read-only
// with one link, and no file landed without a hash in the run. The test reports the size one
// byte off, as a stale report would be. Believed, it makes the commit refuse the backup (the
// size disagrees with Manifest.db), which shows the stat was skipped; in every case where it
// must not be believed, the commit stats the file and succeeds.
func TestFullCommitTakesTheUploadsStat(t *testing.T) {
	const name, other = "Library/f000003", "Library/f000004"
	blobName := func(n string) string {
		return testUDID + "/" + filepath.ToSlash(backupfmt.BlobPath("", backupfmt.FileID("HomeDomain", n)))
	}
	type receiver = func(name string, fi fs.FileInfo, sum []byte) // Run.ContentHash's receiver
	for _, c := range []struct {
		what     string
		report   func(receiver, syscall.Stat_t)
		believed bool
	}{
		{"as uploaded", func(hashed receiver, st syscall.Stat_t) {
			hashed(blobName(name), statInfo{st}, make([]byte, 16))
		}, true},
		{"after a copy landed", func(hashed receiver, st syscall.Stat_t) {
			hashed(blobName(name), statInfo{st}, make([]byte, 16))
			hashed(testUDID+"/copied", nil, nil)
		}, false},
		{"under another name", func(hashed receiver, st syscall.Stat_t) {
			hashed(blobName(other), statInfo{st}, make([]byte, 16))
		}, false},
		{"not a blob name", func(hashed receiver, st syscall.Stat_t) {
			hashed(strings.Replace(blobName(name), testUDID, testUDID+"/Snapshot", 1), statInfo{st}, make([]byte, 16))
		}, false},
		{"inode reported twice", func(hashed receiver, st syscall.Stat_t) {
			hashed(blobName(name), statInfo{st}, make([]byte, 16))
			st.Mtim.Nsec++
			hashed(blobName(name), statInfo{st}, make([]byte, 16))
		}, false},
		{"writable", func(hashed receiver, st syscall.Stat_t) {
			st.Mode |= 0o200
			hashed(blobName(name), statInfo{st}, make([]byte, 16))
		}, false},
		{"two links", func(hashed receiver, st syscall.Stat_t) {
			st.Nlink = 2
			hashed(blobName(name), statInfo{st}, make([]byte, 16))
		}, false},
	} {
		t.Run(c.what, func(t *testing.T) {
			s := openStore(t, t.TempDir(), testOptions(&fakeClock{t: epoch, step: time.Hour}))
			r, err := s.Begin(context.Background(), testUDID, BeginOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Abort()
			if err := newFakeDevice(testUDID, 40, 500, 5).backup(r.Root(), nil); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(r.Root(), filepath.FromSlash(blobName(name)))
			if err := os.Chmod(p, 0o444); err != nil {
				t.Fatal(err)
			}
			var st syscall.Stat_t
			if err := syscall.Lstat(p, &st); err != nil {
				t.Fatal(err)
			}
			st.Size++ // what a stale report would say
			_, hashed := r.ContentHash()
			c.report(hashed, st)
			_, err = r.Commit(context.Background(), CommitMeta{})
			if c.believed {
				if err == nil || !strings.Contains(err.Error(), "Manifest.db says") {
					t.Fatalf("commit: %v; want the reported size believed (and refused)", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("commit: %v; the file must have been stat'ed", err)
			}
		})
	}
}

// statInfo is a FileInfo from a Stat_t, as the engine's fstat gives.
type statInfo struct{ st syscall.Stat_t }

func (i statInfo) Name() string       { return "" }
func (i statInfo) Size() int64        { return i.st.Size }
func (i statInfo) Mode() fs.FileMode  { return fs.FileMode(i.st.Mode & 0o777) }
func (i statInfo) ModTime() time.Time { return time.Unix(i.st.Mtim.Unix()) }
func (i statInfo) IsDir() bool        { return false }
func (i statInfo) Sys() any           { return &i.st }
