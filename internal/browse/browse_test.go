package browse

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"snapback/internal/backupcrypto"
	"snapback/internal/backupfmt"
	"snapback/internal/browse/browsetest"
)

const testPassword = "correct horse"

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

var (
	smsDB  = randBytes(40_000)
	photo1 = randBytes(3 << 20) // several MB, streamed
	photo2 = randBytes(1234)
	notes  = []byte("a note, exactly 32 bytes long!!!") // a full padding block when encrypted
	t1     = time.Date(2023, 5, 6, 7, 8, 9, 0, time.UTC)
	t2     = time.Date(2022, 1, 1, 0, 0, 1, 0, time.UTC)
)

func fixtureFiles() []browsetest.File {
	return []browsetest.File{
		{Domain: "HomeDomain", RelativePath: "", Flags: backupfmt.FlagDir},
		{Domain: "HomeDomain", RelativePath: "Library", Flags: backupfmt.FlagDir},
		{Domain: "HomeDomain", RelativePath: "Library/SMS", Flags: backupfmt.FlagDir},
		{Domain: "HomeDomain", RelativePath: "Library/SMS/sms.db", Content: smsDB, Modified: t1},
		{Domain: "HomeDomain", RelativePath: "Library/Notes/notes.txt", Content: notes},
		{Domain: "HomeDomain", RelativePath: "Library/empty", Content: nil, EmptyBlob: true},
		{Domain: "HomeDomain", RelativePath: "Library/empty-padded", Content: []byte{}},
		{Domain: "HomeDomain", RelativePath: "Library/link", Flags: backupfmt.FlagSymlink, Target: "/etc/passwd"},
		{Domain: "CameraRollDomain", RelativePath: "Media/DCIM/100APPLE", Flags: backupfmt.FlagDir},
		{Domain: "CameraRollDomain", RelativePath: "Media/DCIM/100APPLE/IMG_0001.JPG", Content: photo1, Modified: t2},
		{Domain: "CameraRollDomain", RelativePath: "Media/DCIM/101APPLE/IMG_0002.HEIC", Content: photo2, Modified: t1},
		{Domain: "CameraRollDomain", RelativePath: "Media/PhotoData/Photos.sqlite", Content: []byte("not a photo")},
		{Domain: "AppDomain-com.example.app", RelativePath: "Documents/IMG_9.JPG", Content: []byte("app image")},
	}
}

// newFixture writes a backup folder (encrypted when password is set) and returns its path and
// a hash of its whole tree.
func newFixture(t *testing.T, files []browsetest.File, password string) (string, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "00008030-001A2B3C4D5E6F70")
	if err := browsetest.Write(dir, files, browsetest.Options{Password: password}); err != nil {
		t.Fatal(err)
	}
	return dir, treeHash(t, dir)
}

// treeHash hashes every path, mode and content under dir, so any added, removed or changed
// file (a decrypted Manifest.db, a -wal file, a rewritten blob) changes it.
func treeHash(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		h.Write([]byte(rel + "\x00" + fi.Mode().String() + "\x00" + fi.ModTime().String() + "\x00"))
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func pw(s string) func() ([]byte, error) {
	return func() ([]byte, error) { return []byte(s), nil }
}

func openFixture(t *testing.T, dir, password string) *Backup {
	t.Helper()
	b, err := Open(context.Background(), dir, Options{Password: pw(password), TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func forModes(t *testing.T, fn func(t *testing.T, password string)) {
	t.Run("plain", func(t *testing.T) { fn(t, "") })
	t.Run("encrypted", func(t *testing.T) { fn(t, testPassword) })
}

func listPaths(t *testing.T, b *Backup, f Filter) []string {
	t.Helper()
	var got []string
	if err := b.List(context.Background(), f, func(r backupfmt.Record) error {
		got = append(got, r.Domain+"/"+r.RelativePath)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sort.Strings(got)
	return got
}

func TestList(t *testing.T) {
	forModes(t, func(t *testing.T, password string) {
		dir, before := newFixture(t, fixtureFiles(), password)
		b := openFixture(t, dir, password)
		if b.Encrypted() != (password != "") {
			t.Errorf("Encrypted() = %v", b.Encrypted())
		}
		if got := listPaths(t, b, Filter{}); len(got) != len(fixtureFiles()) {
			t.Errorf("List all = %d rows; want %d", len(got), len(fixtureFiles()))
		}
		cases := []struct {
			f    Filter
			want []string
		}{
			{Filter{Domain: "HomeDomain", Pattern: "sms"}, []string{"HomeDomain/Library/SMS", "HomeDomain/Library/SMS/sms.db"}},
			{Filter{Pattern: "*.JPG"}, []string{"AppDomain-com.example.app/Documents/IMG_9.JPG", "CameraRollDomain/Media/DCIM/100APPLE/IMG_0001.JPG"}},
			{Filter{Pattern: "Media/DCIM/*/IMG_*"}, []string{"CameraRollDomain/Media/DCIM/100APPLE/IMG_0001.JPG", "CameraRollDomain/Media/DCIM/101APPLE/IMG_0002.HEIC"}},
			{Filter{Domain: "CameraRollDomain", Pattern: "Media/**"}, []string{"CameraRollDomain/Media/DCIM/100APPLE", "CameraRollDomain/Media/DCIM/100APPLE/IMG_0001.JPG", "CameraRollDomain/Media/DCIM/101APPLE/IMG_0002.HEIC", "CameraRollDomain/Media/PhotoData/Photos.sqlite"}},
			{Filter{Pattern: "**/notes.[st]xt"}, []string{"HomeDomain/Library/Notes/notes.txt"}},
			{Filter{Domain: "NoSuchDomain"}, nil},
		}
		for _, c := range cases {
			if got := listPaths(t, b, c.f); strings.Join(got, "|") != strings.Join(c.want, "|") {
				t.Errorf("List(%+v) = %q; want %q", c.f, got, c.want)
			}
		}
		b.Close()
		if after := treeHash(t, dir); after != before {
			t.Error("listing changed the backup folder")
		}
	})
}

func TestExtract(t *testing.T) {
	forModes(t, func(t *testing.T, password string) {
		dir, before := newFixture(t, fixtureFiles(), password)
		b := openFixture(t, dir, password)
		out := filepath.Join(t.TempDir(), "out")
		st, err := b.Extract(context.Background(), Filter{Domain: "HomeDomain"}, out, ExtractOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want := map[string][]byte{
			"HomeDomain/Library/SMS/sms.db":      smsDB,
			"HomeDomain/Library/Notes/notes.txt": notes,
			"HomeDomain/Library/empty":           {},
			"HomeDomain/Library/empty-padded":    {},
		}
		if st.Files != len(want) || st.Skipped != 4 || len(st.Refused) != 0 {
			t.Errorf("stats = %+v; want %d files, 4 skipped (3 dirs, 1 symlink)", st, len(want))
		}
		checkTree(t, out, want)
		checkMtime(t, filepath.Join(out, "HomeDomain/Library/SMS/sms.db"), t1)
		checkMtime(t, filepath.Join(out, "HomeDomain/Library/Notes/notes.txt"), browsetest.DefaultModified)

		// A second run does not overwrite unless asked.
		os.WriteFile(filepath.Join(out, "HomeDomain/Library/SMS/sms.db"), []byte("mine"), 0o644)
		st, err = b.Extract(context.Background(), Filter{Pattern: "Library/*/*"}, out, ExtractOptions{})
		if !errors.Is(err, ErrExists) || len(st.Existing) != 2 || st.Files != 0 {
			t.Errorf("second extract = %+v, %v; want 2 existing files left alone, ErrExists", st, err)
		}
		if b, _ := os.ReadFile(filepath.Join(out, "HomeDomain/Library/SMS/sms.db")); string(b) != "mine" {
			t.Error("an existing file was overwritten without Overwrite")
		}
		if _, err := b.Extract(context.Background(), Filter{Pattern: "sms.db"}, out, ExtractOptions{Overwrite: true}); err != nil {
			t.Errorf("extract with Overwrite: %v", err)
		}
		checkTree(t, out, want)
		b.Close()
		if after := treeHash(t, dir); after != before {
			t.Error("extracting changed the backup folder")
		}
	})
}

func TestExportCameraRoll(t *testing.T) {
	forModes(t, func(t *testing.T, password string) {
		dir, before := newFixture(t, fixtureFiles(), password)
		b := openFixture(t, dir, password)
		out := t.TempDir()
		var progress []string
		st, err := b.ExportCameraRoll(context.Background(), out, ExtractOptions{Progress: func(n string, _ int64) { progress = append(progress, n) }})
		if err != nil {
			t.Fatal(err)
		}
		if st.Files != 2 || st.Bytes != int64(len(photo1)+len(photo2)) || len(progress) != 2 {
			t.Errorf("stats = %+v, progress %q; want 2 files, %d bytes", st, progress, len(photo1)+len(photo2))
		}
		checkTree(t, out, map[string][]byte{"100APPLE/IMG_0001.JPG": photo1, "101APPLE/IMG_0002.HEIC": photo2})
		checkMtime(t, filepath.Join(out, "100APPLE/IMG_0001.JPG"), t2)
		checkMtime(t, filepath.Join(out, "101APPLE/IMG_0002.HEIC"), t1)
		b.Close()
		if after := treeHash(t, dir); after != before {
			t.Error("exporting changed the backup folder")
		}
	})
}

func TestHostilePathsRefused(t *testing.T) {
	hostile := []browsetest.File{
		{Domain: "HomeDomain", RelativePath: "../../escaped", Content: []byte("x")},
		{Domain: "HomeDomain", RelativePath: "/etc/passwd-abs", Content: []byte("x")},
		{Domain: "HomeDomain", RelativePath: "a/../../../up", Content: []byte("x")},
		{Domain: "HomeDomain", RelativePath: "a//b", Content: []byte("x")},
		{Domain: "HomeDomain", RelativePath: `dir\..\..\win`, Content: []byte("x")},
		{Domain: "..", RelativePath: "dotdot-domain", Content: []byte("x")},
		{Domain: "Home/../..", RelativePath: "slash-domain", Content: []byte("x")},
		{Domain: "CameraRollDomain", RelativePath: "Media/DCIM/../../../../photo-escape", Content: []byte("x")},
		{Domain: "HomeDomain", RelativePath: "fine.txt", Content: []byte("fine")},
		{Domain: "CameraRollDomain", RelativePath: "Media/DCIM/100APPLE/ok.jpg", Content: []byte("ok")},
	}
	forModes(t, func(t *testing.T, password string) {
		dir, before := newFixture(t, hostile, password)
		b := openFixture(t, dir, password)
		base := t.TempDir()
		out := filepath.Join(base, "a", "b", "out")
		st, err := b.Extract(context.Background(), Filter{}, out, ExtractOptions{})
		if !errors.Is(err, ErrUnsafePath) {
			t.Errorf("Extract error = %v; want ErrUnsafePath", err)
		}
		if st.Files != 2 || len(st.Refused) != 8 {
			t.Errorf("stats = %+v; want 2 files written, 8 refused", st)
		}
		photos := filepath.Join(base, "a", "b", "photos")
		st, err = b.ExportCameraRoll(context.Background(), photos, ExtractOptions{})
		if !errors.Is(err, ErrUnsafePath) || st.Files != 1 || len(st.Refused) != 1 {
			t.Errorf("ExportCameraRoll = %+v, %v; want 1 file, 1 refused, ErrUnsafePath", st, err)
		}
		// Nothing but the two output folders exists under base.
		var found []string
		filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
			if d != nil && !d.IsDir() {
				rel, _ := filepath.Rel(base, p)
				found = append(found, filepath.ToSlash(rel))
			}
			return nil
		})
		sort.Strings(found)
		want := []string{"a/b/out/CameraRollDomain/Media/DCIM/100APPLE/ok.jpg", "a/b/out/HomeDomain/fine.txt", "a/b/photos/100APPLE/ok.jpg"}
		if strings.Join(found, "|") != strings.Join(want, "|") {
			t.Errorf("files written = %q; want %q", found, want)
		}
		b.Close()
		if after := treeHash(t, dir); after != before {
			t.Error("extracting changed the backup folder")
		}
	})
}

func TestOutputInsideBackupRefused(t *testing.T) {
	forModes(t, func(t *testing.T, password string) {
		dir, before := newFixture(t, fixtureFiles(), password)
		b := openFixture(t, dir, password)
		for _, out := range []string{dir, filepath.Join(dir, "out"), filepath.Join(dir, "00", "x")} {
			if _, err := b.Extract(context.Background(), Filter{}, out, ExtractOptions{}); !errors.Is(err, ErrInsideBackup) {
				t.Errorf("Extract to %s: error = %v; want ErrInsideBackup", out, err)
			}
		}
		// Through a symlink too.
		link := filepath.Join(t.TempDir(), "link")
		if err := os.Symlink(dir, link); err != nil {
			t.Fatal(err)
		}
		if _, err := b.ExportCameraRoll(context.Background(), filepath.Join(link, "photos"), ExtractOptions{}); !errors.Is(err, ErrInsideBackup) {
			t.Errorf("Extract through a symlink: error = %v; want ErrInsideBackup", err)
		}
		b.Close()
		if after := treeHash(t, dir); after != before {
			t.Error("refused extraction changed the backup folder")
		}
		if password != "" {
			if _, err := Open(context.Background(), dir, Options{Password: pw(password), TempDir: dir}); !errors.Is(err, ErrInsideBackup) {
				t.Errorf("Open with TempDir inside the backup: error = %v; want ErrInsideBackup", err)
			}
		}
	})
}

func TestEncryptedOpenErrors(t *testing.T) {
	dir, before := newFixture(t, fixtureFiles(), testPassword)
	tmp := t.TempDir()
	ctx := context.Background()
	if _, err := Open(ctx, dir, Options{Password: pw("wrong"), TempDir: tmp}); !errors.Is(err, backupcrypto.ErrWrongPassword) {
		t.Errorf("wrong password error = %v; want ErrWrongPassword", err)
	}
	if _, err := Open(ctx, dir, Options{TempDir: tmp}); !errors.Is(err, ErrPasswordRequired) {
		t.Errorf("no password error = %v; want ErrPasswordRequired", err)
	}
	boom := errors.New("keychain locked")
	if _, err := Open(ctx, dir, Options{TempDir: tmp, Password: func() ([]byte, error) { return nil, boom }}); !errors.Is(err, boom) {
		t.Errorf("password callback error = %v; want it wrapped", err)
	}
	// The decrypted Manifest.db lives in a private folder only while the Backup is open.
	secret := []byte(testPassword)
	b, err := Open(ctx, dir, Options{TempDir: tmp, Password: func() ([]byte, error) { return secret, nil }})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(secret, make([]byte, len(secret))) {
		t.Error("Open did not zero the password it was given")
	}
	entries, _ := os.ReadDir(tmp)
	if len(entries) != 1 {
		t.Fatalf("temp folder holds %d entries while open; want 1", len(entries))
	}
	if fi, _ := os.Stat(filepath.Join(tmp, entries[0].Name())); fi.Mode().Perm() != 0o700 {
		t.Errorf("private folder mode = %v; want 0700", fi.Mode().Perm())
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
		t.Errorf("temp folder not cleaned after Close: %v", entries)
	}
	if after := treeHash(t, dir); after != before {
		t.Error("opening changed the backup folder")
	}
}

func TestOpenWithCachedKEK(t *testing.T) {
	dir, _ := newFixture(t, fixtureFiles(), testPassword)
	ctx := context.Background()
	b := openFixture(t, dir, testPassword)
	kek := b.KEK()
	if len(kek) != 32 {
		t.Fatalf("KEK() = %d bytes; want 32", len(kek))
	}
	b.Close()
	asked := 0
	ask := func() ([]byte, error) { asked++; return []byte(testPassword), nil }
	b2, err := Open(ctx, dir, Options{KEK: kek, Password: ask, TempDir: t.TempDir()})
	if err != nil || asked != 0 {
		t.Fatalf("Open with cached KEK: %v, password asked %d times; want no prompt", err, asked)
	}
	if got := listPaths(t, b2, Filter{Pattern: "sms.db"}); len(got) != 1 {
		t.Errorf("List after KEK open = %q", got)
	}
	b2.Close()
	stale := bytes.Clone(kek)
	stale[0] ^= 0xff
	b3, err := Open(ctx, dir, Options{KEK: stale, Password: ask, TempDir: t.TempDir()})
	if err != nil || asked != 1 {
		t.Fatalf("Open with a stale KEK: %v, password asked %d times; want one prompt", err, asked)
	}
	b3.Close()
	plainDir, _ := newFixture(t, fixtureFiles(), "")
	if k := openFixture(t, plainDir, "").KEK(); k != nil {
		t.Errorf("plain backup KEK() = %x; want nil", k)
	}
}

// Before iOS 10.2 an encrypted backup kept Manifest.db in plaintext (no ManifestKey); only
// the files are encrypted. It is read in place, read-only, with nothing decrypted to disk.
func TestEncryptedWithPlainManifestDB(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "backup")
	if err := browsetest.Write(dir, fixtureFiles(), browsetest.Options{Password: testPassword, PlainManifestDB: true}); err != nil {
		t.Fatal(err)
	}
	before := treeHash(t, dir)
	tmp := t.TempDir()
	b, err := Open(context.Background(), dir, Options{Password: pw(testPassword), TempDir: tmp})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
		t.Errorf("a plaintext Manifest.db was copied to %v", entries)
	}
	out := t.TempDir()
	if _, err := b.Extract(context.Background(), Filter{Pattern: "sms.db"}, out, ExtractOptions{}); err != nil {
		t.Fatal(err)
	}
	checkTree(t, out, map[string][]byte{"HomeDomain/Library/SMS/sms.db": smsDB})
	b.Close()
	if treeHash(t, dir) != before {
		t.Error("the backup folder changed")
	}
}

func TestOpenNotABackup(t *testing.T) {
	_, err := Open(context.Background(), t.TempDir(), Options{})
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "not a backup folder") {
		t.Errorf("Open(empty folder) = %v; want a not-a-backup error", err)
	}
}

func TestMissingBlob(t *testing.T) {
	forModes(t, func(t *testing.T, password string) {
		dir, _ := newFixture(t, []browsetest.File{{Domain: "HomeDomain", RelativePath: "gone", Content: []byte("x"), NoBlob: true}}, password)
		b := openFixture(t, dir, password)
		if _, err := b.Extract(context.Background(), Filter{}, t.TempDir(), ExtractOptions{}); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("error = %v; want ErrNotExist", err)
		}
	})
}

func TestCorruptEncryptedFileLeavesNothing(t *testing.T) {
	dir, _ := newFixture(t, []browsetest.File{{Domain: "HomeDomain", RelativePath: "f", Content: randBytes(100_000)}}, testPassword)
	blob := backupfmt.BlobPath(dir, backupfmt.FileID("HomeDomain", "f"))
	ct, _ := os.ReadFile(blob)
	os.WriteFile(blob, ct[:len(ct)-5], 0o644) // not a whole number of blocks
	b := openFixture(t, dir, testPassword)
	out := t.TempDir()
	if _, err := b.Extract(context.Background(), Filter{}, out, ExtractOptions{}); !errors.Is(err, backupcrypto.ErrCiphertextLength) {
		t.Errorf("error = %v; want ErrCiphertextLength", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(out, "HomeDomain")); len(entries) != 0 {
		t.Errorf("a failed extraction left %v", entries)
	}
}

func checkTree(t *testing.T, root string, want map[string][]byte) {
	t.Helper()
	got := map[string]bool{}
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			got[filepath.ToSlash(rel)] = true
		}
		return nil
	})
	for name, content := range want {
		b, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !bytes.Equal(b, content) {
			t.Errorf("%s: %d bytes differ from the original %d bytes", name, len(b), len(content))
		}
		delete(got, name)
	}
	for name := range got {
		t.Errorf("unexpected output file %s", name)
	}
}

func checkMtime(t *testing.T, p string, want time.Time) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.ModTime().Equal(want) {
		t.Errorf("%s: mtime %v; want %v", p, fi.ModTime().UTC(), want)
	}
}
