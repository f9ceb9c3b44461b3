//go:build unix

package mobilebackup2

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"snapback/internal/devicelink"
)

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// TestStagingUploadsNeverWriteCommittedFiles: in a store's staging folder (DirectWrites,
// FileMode 0444) names are hard links to read-only committed files. Uploads over them, both
// outside Snapshot/ and inside it, make new inodes; the committed file keeps its bytes, its
// inode and its mode; new files are created read-only; no temp file is left.
func TestStagingUploadsNeverWriteCommittedFiles(t *testing.T) {
	root := t.TempDir()
	u := testUDID
	committed := filepath.Join(t.TempDir(), "committed")
	if err := os.WriteFile(committed, []byte("committed bytes"), 0o444); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(root, u, "ab"), 0o755)
	staged := filepath.Join(root, u, "ab", "ab01")
	if err := os.Link(committed, staged); err != nil {
		t.Fatal(err)
	}
	ino := inode(t, committed)
	c, d := pair(t)
	var linkErr error
	wait := d.run(func(d *fakeDevice) error {
		d.expectBackup()
		if code, _, err := d.simple(devicelink.CreateDirectory, u+"/Snapshot/ab"); code != 0 || err != nil {
			return fmt.Errorf("mkdir %d %v", code, err)
		}
		linkErr = os.Link(committed, filepath.Join(root, u, "Snapshot", "ab", "ab03"))
		if code, err := d.upload(
			upFile{name: u + "/ab/ab01", data: []byte("new version")},
			upFile{name: u + "/ab/ab02", data: []byte("a new file")},
			upFile{name: u + "/Snapshot/ab/ab03", data: []byte("via Snapshot")},
			upFile{name: u + "/Status.plist", data: statusPlist(t, "finished")},
		); code != 0 || err != nil {
			return fmt.Errorf("upload %d %v", code, err)
		}
		if code, _, err := d.simple(devicelink.MoveItems, map[string]any{u + "/Snapshot/ab/ab03": u + "/ab/ab03"}, map[string]any{}, 1.0); code != 0 || err != nil {
			return fmt.Errorf("move %d %v", code, err)
		}
		return d.finish(0, "")
	})
	if _, err := backupWith(t, c, BackupOptions{Root: root, DirectWrites: true, FileMode: 0o444}); err != nil {
		t.Fatal(err)
	}
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if linkErr != nil {
		t.Fatal(linkErr)
	}
	if b, _ := os.ReadFile(committed); string(b) != "committed bytes" {
		t.Errorf("committed file now holds %q", b)
	}
	if got := inode(t, committed); got != ino {
		t.Errorf("committed inode changed: %d, was %d", got, ino)
	}
	if fi, _ := os.Stat(committed); fi.Mode().Perm() != 0o444 {
		t.Errorf("committed file mode %v; want 0444", fi.Mode().Perm())
	}
	for name, want := range map[string]string{"ab01": "new version", "ab02": "a new file", "ab03": "via Snapshot"} {
		p := filepath.Join(root, u, "ab", name)
		if b, _ := os.ReadFile(p); string(b) != want {
			t.Errorf("%s holds %q; want %q", name, b, want)
		}
		if inode(t, p) == ino {
			t.Errorf("%s is still the committed inode", name)
		}
		if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o444 {
			t.Errorf("%s created with mode %v; want 0444", name, fi.Mode().Perm())
		}
	}
	entries, _ := os.ReadDir(filepath.Join(root, u, "ab"))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".snapback-upload-") {
			t.Errorf("temp file left: %s", e.Name())
		}
	}
}

// TestAbortMidUpload: in a user's folder (--dir) a file being received is never under its
// final name, so a crash at any moment leaves no partial file there, and a connection lost
// mid-file leaves no temp file either. In a staging folder (DirectWrites) a new name is
// written directly (the point of the option), and the partial file is removed on the abort.
func TestAbortMidUpload(t *testing.T) {
	for _, direct := range []bool{false, true} {
		t.Run(fmt.Sprintf("direct=%v", direct), func(t *testing.T) {
			root := t.TempDir()
			u := testUDID
			os.MkdirAll(filepath.Join(root, u, "ab"), 0o755)
			c, d := pair(t)
			var during []string
			wait := d.run(func(d *fakeDevice) error {
				d.expectBackup()
				if err := d.send(devicelink.UploadFiles, map[string]any{}, 50.0, uint64(100000)); err != nil {
					return err
				}
				d.dl.WriteName("device/f")
				d.dl.WriteName(u + "/ab/ab01")
				if err := d.dl.Flush(); err != nil {
					return err
				}
				// net.Pipe is synchronous: this flush returns once the host has read the
				// block, which it does only after creating the file it writes to.
				if err := d.dl.WriteBlock(devicelink.CodeFileData, make([]byte, 5000)); err != nil {
					return err
				}
				if err := d.dl.Flush(); err != nil {
					return err
				}
				entries, err := os.ReadDir(filepath.Join(root, u, "ab"))
				if err != nil {
					return err
				}
				for _, e := range entries {
					during = append(during, e.Name())
				}
				d.conn.Close() // the device vanishes mid-file
				return nil
			})
			if _, err := backupWith(t, c, BackupOptions{Root: root, DirectWrites: direct}); err == nil {
				t.Fatal("backup succeeded after the link was lost")
			}
			if err := wait(); err != nil {
				t.Fatal(err)
			}
			if len(during) != 1 {
				t.Fatalf("while receiving, ab/ holds %v; want one file", during)
			}
			if direct && during[0] != "ab01" {
				t.Errorf("staging: receiving into %q; want the final name ab01", during[0])
			}
			if !direct && !strings.HasPrefix(during[0], ".snapback-upload-") {
				t.Errorf("--dir: receiving into %q; want a temp file, never the final name", during[0])
			}
			if entries, _ := os.ReadDir(filepath.Join(root, u, "ab")); len(entries) != 0 {
				var names []string
				for _, e := range entries {
					names = append(names, e.Name())
				}
				t.Errorf("after the abort ab/ holds %v; want nothing", names)
			}
		})
	}
}

// TestPlantedSymlinkDirsNotFollowed: a symlink planted as a hash-prefix folder, or as
// Snapshot, is never followed by any request, and a folder swapped for a symlink after the
// host opened it mid-run does not redirect later uploads outside the backup folder.
func TestPlantedSymlinkDirsNotFollowed(t *testing.T) {
	root := t.TempDir()
	u := testUDID
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "keep"), []byte("keep"), 0o644)
	os.MkdirAll(filepath.Join(root, u), 0o755)
	if err := os.Symlink(outside, filepath.Join(root, u, "ab")); err != nil {
		t.Fatal(err)
	}
	c, d := pair(t)
	var swapErr error
	wait := d.run(func(d *fakeDevice) error {
		d.expectBackup()
		// removeLeftoverSnapshot ran: plant Snapshot as a link now.
		if err := os.Symlink(outside, filepath.Join(root, u, "Snapshot")); err != nil {
			return err
		}
		for _, m := range [][]any{
			{devicelink.CreateDirectory, u + "/ab"},
			{devicelink.CreateDirectory, u + "/ab/sub"},
			{devicelink.CreateDirectory, u + "/Snapshot/ab"},
			{devicelink.MoveItems, map[string]any{u + "/ab/keep": u + "/stolen"}, map[string]any{}, 1.0},
			{devicelink.CopyItem, u + "/ab/keep", u + "/copied"},
			{devicelink.RemoveItems, []any{u + "/ab/keep"}, map[string]any{}, 1.0},
		} {
			code, _, err := d.simple(m...)
			if err != nil {
				return err
			}
			if code == 0 {
				return fmt.Errorf("%v accepted", m[:2])
			}
		}
		for _, p := range []string{u + "/ab/ab01", u + "/Snapshot/ab01", u + "/Snapshot/keep"} {
			if code, err := d.upload(upFile{name: p, data: []byte("pwned")}); err != nil || code == 0 {
				return fmt.Errorf("upload %s: %d %v", p, code, err)
			}
		}
		// A real folder, opened by the host for its first upload, then swapped for a link.
		if code, _, err := d.simple(devicelink.CreateDirectory, u+"/cd"); code != 0 || err != nil {
			return fmt.Errorf("mkdir cd %d %v", code, err)
		}
		if code, err := d.upload(upFile{name: u + "/cd/cd01", data: []byte("one")}); code != 0 || err != nil {
			return fmt.Errorf("upload cd01 %d %v", code, err)
		}
		if swapErr = os.Rename(filepath.Join(root, u, "cd"), filepath.Join(root, u, "cd.moved")); swapErr == nil {
			swapErr = os.Symlink(outside, filepath.Join(root, u, "cd"))
		}
		d.upload(upFile{name: u + "/cd/cd02", data: []byte("pwned")})
		d.simple(devicelink.MoveItems, map[string]any{u + "/cd/cd01": u + "/cd/keep"}, map[string]any{}, 1.0)
		return d.finish(0, "")
	})
	backupWith(t, c, BackupOptions{Root: root})
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if swapErr != nil {
		t.Fatal(swapErr)
	}
	var names []string
	entries, _ := os.ReadDir(outside)
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"keep"}) {
		t.Errorf("outside holds %v; want only keep", names)
	}
	if b, _ := os.ReadFile(filepath.Join(outside, "keep")); string(b) != "keep" {
		t.Errorf("outside/keep now holds %q", b)
	}
	for _, l := range []string{"ab", "Snapshot", "cd"} {
		if fi, err := os.Lstat(filepath.Join(root, u, l)); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("%s is no longer the planted link: %v %v", l, fi, err)
		}
	}
	if _, err := os.Stat(filepath.Join(root, u, "cd.moved", "cd01")); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Error(err)
	}
}

// TestLargeUploadThroughWriteBuffer: a file larger than the upload write buffer, sent in
// device-sized blocks, lands byte for byte, and the streamed hash and FileInfo handed to
// HashUploads describe exactly the landed file; the one hash the server reuses is reset
// between files.
func TestLargeUploadThroughWriteBuffer(t *testing.T) {
	root := t.TempDir()
	u := testUDID
	data := make([]byte, 2*uploadWriteSize+12345)
	for i := range data {
		data[i] = byte(i*7 + i>>11)
	}
	c, d := pair(t)
	type landed struct {
		name string
		fi   os.FileInfo
		sum  []byte
	}
	var got []landed
	statusData := statusPlist(t, "finished")
	// Info and Sum are only valid during the call.
	c.HashUploads(sha256.New, func(l Landed) { got = append(got, landed{l.Name, holdInfo(l.Info), bytes.Clone(l.Sum)}) })
	wait := d.run(func(d *fakeDevice) error {
		d.expectBackup()
		if code, _, err := d.simple(devicelink.CreateDirectory, u+"/Snapshot/ab"); code != 0 || err != nil {
			return fmt.Errorf("mkdir %d %v", code, err)
		}
		if code, err := d.upload(upFile{name: u + "/Snapshot/ab/big", data: data},
			upFile{name: u + "/Status.plist", data: statusData}); code != 0 || err != nil {
			return fmt.Errorf("upload %d %v", code, err)
		}
		return d.finish(0, "")
	})
	if _, err := backupWith(t, c, BackupOptions{Root: root}); err != nil {
		t.Fatal(err)
	}
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(root, u, "Snapshot", "ab", "big")
	b, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(b, data) {
		t.Fatalf("landed file differs (%d bytes, want %d): %v", len(b), len(data), err)
	}
	if len(got) != 2 {
		t.Fatalf("hash callback called %d times; want 2", len(got))
	}
	want := sha256.Sum256(data)
	if !bytes.Equal(got[0].sum, want[:]) {
		t.Errorf("streamed hash %x; want %x", got[0].sum, want)
	}
	if want := sha256.Sum256(statusData); !bytes.Equal(got[1].sum, want[:]) {
		t.Errorf("second file's streamed hash %x; want %x", got[1].sum, want)
	}
	if got[0].name != u+"/Snapshot/ab/big" || got[1].name != u+"/Status.plist" {
		t.Errorf("landed names %q, %q; want where the files are", got[0].name, got[1].name)
	}
	if got[0].fi.Size() != int64(len(data)) || inode(t, p) != got[0].fi.Sys().(*syscall.Stat_t).Ino {
		t.Errorf("FileInfo size %d ino %v; want %d, the landed inode", got[0].fi.Size(), got[0].fi.Sys(), len(data))
	}
}

// TestPrefixSlot: only the exact names of hash-prefix folders (lower-case hex, this UDID)
// take the array in front of the map; anything else, however close, goes to the map.
func TestPrefixSlot(t *testing.T) {
	tr := newDirTree(t.TempDir(), testUDID)
	u := testUDID
	for rel, want := range map[string]*openDir{
		u + "/ab":                               &tr.prefix[0][0xab],
		u + "/Snapshot/0f":                      &tr.prefix[1][0x0f],
		u + "/00":                               &tr.prefix[0][0],
		u + "/ff":                               &tr.prefix[0][0xff],
		u + "/AB":                               nil,
		u + "/Snapshot/aB":                      nil,
		u + "/snapshot/ab":                      nil,
		u + "/ag":                               nil,
		u + "/abc":                              nil,
		u + "/a":                                nil,
		u + "xab":                               nil,
		u + "/Snapshot/ab/cd":                   nil,
		strings.Replace(u, "0", "1", 1) + "/ab": nil,
		"":                                      nil,
		u:                                       nil,
	} {
		if got := tr.prefixSlot(rel); got != want {
			t.Errorf("prefixSlot(%q) = %p; want %p", rel, got, want)
		}
	}
}

// TestLandedSaysWhereAndHow: HashUploads hears of every file where it is on disk: a
// redirected upload under its final name, one that could not be redirected under the name
// the device used, each with its sum and the FileInfo of that very inode; a copy arrives
// without either, so the store knows a file landed whose bytes it has not seen.
func TestLandedSaysWhereAndHow(t *testing.T) {
	root := t.TempDir()
	u := testUDID
	_, newStaged, newFinal := blob("ab", 1)
	_, oldStaged, oldFinal := blob("ab", 2)
	if err := os.MkdirAll(filepath.Join(root, u, "ab"), 0o755); err != nil {
		t.Fatal(err)
	}
	// oldFinal exists (a committed file's link in a clone): its upload cannot be redirected.
	if err := os.WriteFile(filepath.Join(root, oldFinal), []byte("committed"), 0o444); err != nil {
		t.Fatal(err)
	}
	c, d := pair(t)
	var got []Landed
	c.HashUploads(sha256.New, func(l Landed) {
		l.Info, l.Sum = holdInfo(l.Info), bytes.Clone(l.Sum)
		got = append(got, l)
	})
	wait := d.run(func(d *fakeDevice) error {
		d.expectBackup()
		for _, dir := range []string{u + "/Snapshot", u + "/Snapshot/ab", u + "/ab"} {
			if code, _, err := d.simple(devicelink.CreateDirectory, dir); code != 0 || err != nil {
				return fmt.Errorf("mkdir %s: %d %v", dir, code, err)
			}
		}
		if code, err := d.upload(upFile{name: newStaged, data: []byte("new")}, upFile{name: oldStaged, data: []byte("changed")}); code != 0 || err != nil {
			return fmt.Errorf("upload %d %v", code, err)
		}
		moves := map[string]any{newStaged: newFinal}
		if code, _, err := d.simple(devicelink.MoveItems, moves, map[string]any{}, 90.0); code != 0 || err != nil {
			return fmt.Errorf("move %d %v", code, err)
		}
		if code, _, err := d.simple(devicelink.CopyItem, oldFinal, u+"/copied"); code != 0 || err != nil {
			return fmt.Errorf("copy %d %v", code, err)
		}
		if code, err := d.upload(upFile{name: u + "/Status.plist", data: statusPlist(t, "finished")}); code != 0 || err != nil {
			return fmt.Errorf("upload %d %v", code, err)
		}
		return d.finish(0, "")
	})
	if _, err := backupWith(t, c, BackupOptions{Root: root, DirectWrites: true, FileMode: 0o444}); err != nil {
		t.Fatal(err)
	}
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 {
		t.Fatalf("landed reported %d files; want 4: %+v", len(got), got)
	}
	for i, w := range []struct {
		name, data string
		hashed     bool
	}{{newFinal, "new", true}, {oldStaged, "changed", true}, {u + "/copied", "committed", false}} {
		l := got[i]
		if l.Name != w.name {
			t.Errorf("file %d landed as %q; want %q", i, l.Name, w.name)
		}
		if !w.hashed {
			if l.Info != nil || l.Sum != nil {
				t.Errorf("%s: a copy reported with a FileInfo or sum", w.name)
			}
			continue
		}
		sum := sha256.Sum256([]byte(w.data))
		if l.Info == nil || !bytes.Equal(l.Sum, sum[:]) {
			t.Errorf("%s: sum %x, FileInfo %v; want %x", w.name, l.Sum, l.Info, sum)
			continue
		}
		if ino := inode(t, filepath.Join(root, w.name)); l.Info.Sys().(*syscall.Stat_t).Ino != ino {
			t.Errorf("%s: FileInfo of inode %d; the file is %d", w.name, l.Info.Sys().(*syscall.Stat_t).Ino, ino)
		}
	}
}

// TestFailedUploadLeftBehindIsReported: when even the unlink of a failed upload fails, the
// file left behind is reported as landed unhashed (so the store vouches for no upload's stat
// in that run); a file already gone is not.
func TestFailedUploadLeftBehindIsReported(t *testing.T) {
	var got []Landed
	s := &server{landed: func(l Landed) { got = append(got, l) }}
	dir := t.TempDir()
	d, err := openRootDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer closeDir(d)
	s.removeFailed(d, "never-created", testUDID+"/ab/x")
	if len(got) != 0 {
		t.Fatalf("a missing file was reported: %+v", got)
	}
	if err := os.Mkdir(filepath.Join(dir, "a-folder"), 0o755); err != nil {
		t.Fatal(err)
	}
	s.removeFailed(d, "a-folder", testUDID+"/ab/y") // unlink(2) refuses a folder
	if len(got) != 1 || got[0].Name != testUDID+"/ab/y" || got[0].Info != nil || got[0].Sum != nil {
		t.Fatalf("an upload that could not be removed was reported as %+v", got)
	}
}

// heldInfo is a copy of a FileInfo that stays valid after a Landed report, whose FileInfo
// the next upload reuses.
type heldInfo struct {
	name string
	size int64
	mode fs.FileMode
	mod  time.Time
	st   syscall.Stat_t
}

func holdInfo(fi fs.FileInfo) fs.FileInfo {
	if fi == nil {
		return nil
	}
	return &heldInfo{fi.Name(), fi.Size(), fi.Mode(), fi.ModTime(), *fi.Sys().(*syscall.Stat_t)}
}

func (h *heldInfo) Name() string       { return h.name }
func (h *heldInfo) Size() int64        { return h.size }
func (h *heldInfo) Mode() fs.FileMode  { return h.mode }
func (h *heldInfo) ModTime() time.Time { return h.mod }
func (h *heldInfo) IsDir() bool        { return false }
func (h *heldInfo) Sys() any           { return &h.st }
