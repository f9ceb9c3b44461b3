package backupfmt

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
	"time"

	"howett.net/plist"
)

func TestFileIDKnownConstants(t *testing.T) {
	tests := []struct{ domain, path, want string }{
		{"HomeDomain", "Library/SMS/sms.db", "3d0d7e5fb2ce288813306e4d4636395e047a3d28"},
		{"KeychainDomain", "keychain-backup.plist", "51a4616e576dd33cd2abadfea874eb8ff246bf0e"},
	}
	for _, tt := range tests {
		if got := FileID(tt.domain, tt.path); got != tt.want {
			t.Errorf("FileID(%q, %q) = %s; want %s", tt.domain, tt.path, got, tt.want)
		}
		if !ValidFileID(tt.want) {
			t.Errorf("ValidFileID(%s) = false", tt.want)
		}
	}
	if got := BlobPath("/b/UDID", "3d0d7e5fb2ce288813306e4d4636395e047a3d28"); got != filepath.FromSlash("/b/UDID/3d/3d0d7e5fb2ce288813306e4d4636395e047a3d28") {
		t.Errorf("BlobPath = %s", got)
	}
	for _, bad := range []string{"", "../../etc/passwd", "3D0D7E5FB2CE288813306E4D4636395E047A3D28", "3d0d7e5fb2ce288813306e4d4636395e047a3d2", "3d0d7e5fb2ce288813306e4d4636395e047a3d2/"} {
		if ValidFileID(bad) {
			t.Errorf("ValidFileID(%q) = true; want false", bad)
		}
	}
}

func sampleFiles() []MBFile {
	xattr, _ := plist.Marshal(map[string][]byte{"com.apple.assetsd.UUID": []byte("abc")}, plist.BinaryFormat)
	return []MBFile{
		{RelativePath: "Library/SMS/sms.db", LastModified: 1700000000, LastStatusChange: 1700000001, Birth: 1600000000,
			Size: 12345, Mode: 0o100644, InodeNumber: 123456789, UserID: 501, GroupID: 501, Flags: 128, ProtectionClass: 3,
			Digest: bytes.Repeat([]byte{0xab}, 20)},
		{RelativePath: "Media/DCIM/100APPLE/IMG_0001.HEIC", Size: 3 << 20, Mode: 0o100600, InodeNumber: 1 << 40,
			UserID: 501, GroupID: 501, ProtectionClass: 4, EncryptionKey: bytes.Repeat([]byte{7}, 44), ExtendedAttributes: xattr},
		{RelativePath: "", Mode: 0o40755, UserID: 501, GroupID: 501}, // domain root directory
		{RelativePath: "Library/Link", Mode: 0o120755, Target: "/private/var/mobile/Library/Target"},
		{RelativePath: "Ünïcode/ファイル.txt", Size: 1, Mode: 0o100400, LastModified: -5},
	}
}

func TestMBFileRoundTrip(t *testing.T) {
	for _, f := range sampleFiles() {
		b, err := EncodeMBFile(f)
		if err != nil {
			t.Fatalf("EncodeMBFile(%q): %v", f.RelativePath, err)
		}
		if !bytes.HasPrefix(b, []byte("bplist00")) {
			t.Errorf("EncodeMBFile(%q) is not a binary plist", f.RelativePath)
		}
		got, err := DecodeMBFile(b)
		if err != nil {
			t.Fatalf("DecodeMBFile(%q): %v", f.RelativePath, err)
		}
		if !reflect.DeepEqual(got, f) {
			t.Errorf("round trip %q:\n got %+v\nwant %+v", f.RelativePath, got, f)
		}
	}
}

// TestMBFileArchiveShape checks the archive against backup-format.md §2.2: object order,
// UIDs for object values, all ten scalar fields inline.
func TestMBFileArchiveShape(t *testing.T) {
	type archive struct {
		Version  int64          `plist:"$version"`
		Archiver string         `plist:"$archiver"`
		Top      map[string]any `plist:"$top"`
		Objects  []any          `plist:"$objects"`
	}
	decode := func(f MBFile) archive {
		t.Helper()
		b, err := EncodeMBFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var a archive
		if _, err := plist.Unmarshal(b, &a); err != nil {
			t.Fatal(err)
		}
		return a
	}
	kind := func(v any) string {
		switch x := v.(type) {
		case string:
			return "string"
		case []byte:
			return "data"
		case map[string]any:
			if n, ok := x["$classname"].(string); ok {
				return "class:" + n
			}
			if _, ok := x["NS.data"]; ok {
				return "nsdata"
			}
			return "dict"
		}
		return fmt.Sprintf("%T", v)
	}

	full := sampleFiles()[1] // EncryptionKey + ExtendedAttributes
	full.Digest = bytes.Repeat([]byte{1}, 20)
	full.Target = "/t"
	a := decode(full)
	if a.Version != 100000 || a.Archiver != "NSKeyedArchiver" {
		t.Errorf("header = %d %q; want 100000 NSKeyedArchiver", a.Version, a.Archiver)
	}
	if a.Top["root"] != plist.UID(1) {
		t.Errorf("$top.root = %#v; want UID(1)", a.Top["root"])
	}
	var kinds []string
	for _, o := range a.Objects {
		kinds = append(kinds, kind(o))
	}
	want := []string{"string", "dict", "string", "data", "nsdata", "class:NSMutableData", "data", "string", "class:MBFile"}
	if !reflect.DeepEqual(kinds, want) {
		t.Errorf("object kinds = %v; want %v", kinds, want)
	}
	if a.Objects[0] != "$null" {
		t.Errorf("$objects[0] = %v; want $null", a.Objects[0])
	}
	root := a.Objects[1].(map[string]any)
	for k, uid := range map[string]plist.UID{"RelativePath": 2, "Digest": 3, "EncryptionKey": 4, "ExtendedAttributes": 6, "Target": 7, "$class": 8} {
		if root[k] != uid {
			t.Errorf("root[%s] = %#v; want UID(%d)", k, root[k], uid)
		}
	}

	dir := decode(MBFile{RelativePath: "Library", Mode: 0o40755})
	if len(dir.Objects) != 4 {
		t.Errorf("directory archive has %d objects; want 4", len(dir.Objects))
	}
	root = dir.Objects[1].(map[string]any)
	for _, k := range []string{"LastModified", "LastStatusChange", "Birth", "Size", "Mode", "InodeNumber", "UserID", "GroupID", "Flags", "ProtectionClass"} {
		v, ok := root[k]
		if !ok {
			t.Errorf("directory archive lacks scalar %s", k)
			continue
		}
		if _, isUID := v.(plist.UID); isUID {
			t.Errorf("scalar %s is a UID; want an inline integer", k)
		}
	}
}

func TestDecodeMBFileRejects(t *testing.T) {
	notMB, _ := plist.Marshal(map[string]any{
		"$top":     map[string]any{"root": plist.UID(1)},
		"$objects": []any{"$null", map[string]any{"$class": plist.UID(2)}, map[string]any{"$classname": "NSDictionary"}},
	}, plist.BinaryFormat)
	outOfRange, _ := plist.Marshal(map[string]any{
		"$top":     map[string]any{"root": plist.UID(1)},
		"$objects": []any{"$null", map[string]any{"RelativePath": plist.UID(99)}},
	}, plist.BinaryFormat)
	badType, _ := plist.Marshal(map[string]any{
		"$top":     map[string]any{"root": plist.UID(1)},
		"$objects": []any{"$null", map[string]any{"Size": "big"}},
	}, plist.BinaryFormat)
	for name, b := range map[string][]byte{"empty": nil, "garbage": []byte("bplist00garbage"), "class": notMB, "uid": outOfRange, "type": badType} {
		if _, err := DecodeMBFile(b); !errors.Is(err, ErrBadMBFile) {
			t.Errorf("DecodeMBFile(%s) error = %v; want ErrBadMBFile", name, err)
		}
	}
}

func testRecords(n int) []Record {
	domains := []string{"HomeDomain", "CameraRollDomain", "AppDomain-com.example.app"}
	recs := make([]Record, 0, n)
	for i := range n {
		d := domains[i%len(domains)]
		rel := fmt.Sprintf("Library/f%05d.dat", i)
		flags := int64(FlagFile)
		f := MBFile{Size: int64(i), Mode: 0o100644, LastModified: 1700000000 + int64(i), InodeNumber: uint64(i), ProtectionClass: 3}
		switch i % 10 {
		case 0:
			rel, flags, f.Size, f.Mode = fmt.Sprintf("Library/d%05d", i), FlagDir, 0, 0o40755
		case 1:
			flags, f.Size, f.Mode, f.Target = FlagSymlink, 0, 0o120755, "/var/mobile/x"
		}
		f.RelativePath = rel
		recs = append(recs, Record{FileID: FileID(d, rel), Domain: d, RelativePath: rel, Flags: flags, File: f})
	}
	return recs
}

func writeDB(t testing.TB, path string, recs []Record) {
	t.Helper()
	w, err := CreateManifestDB(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := w.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestManifestDBWriteRead(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "Manifest.db")
	recs := testRecords(writeBatch + 123) // spans more than one transaction
	writeDB(t, path, recs)

	if _, err := CreateManifestDB(path); err == nil {
		t.Error("CreateManifestDB on an existing file succeeded; want error")
	}

	db, err := OpenManifestDB(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	n, err := db.Count(ctx)
	if err != nil || n != len(recs) {
		t.Fatalf("Count = %d, %v; want %d", n, err, len(recs))
	}
	i := 0
	err = db.Each(ctx, func(r Record) error {
		if !reflect.DeepEqual(r, recs[i]) {
			return fmt.Errorf("row %d:\n got %+v\nwant %+v", i, r, recs[i])
		}
		i++
		return nil
	})
	if err != nil || i != len(recs) {
		t.Fatalf("Each: %v after %d rows", err, i)
	}
	stop := errors.New("stop")
	if err := db.Each(ctx, func(Record) error { return stop }); err != stop {
		t.Errorf("Each returned %v; want the callback's error", err)
	}
	got, err := db.Get(ctx, recs[42].FileID)
	if err != nil || !reflect.DeepEqual(got, recs[42]) {
		t.Errorf("Get = %+v, %v; want %+v", got, err, recs[42])
	}
	if _, err := db.Get(ctx, FileID("NoDomain", "x")); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(unknown) error = %v; want ErrNotFound", err)
	}

	// The schema is the real one: tables and the three indexes.
	raw, err := sql.Open("sqlite", sqliteURI(path, "mode=ro&immutable=1"))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	rows, err := raw.Query(`SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for rows.Next() {
		var s string
		rows.Scan(&s)
		names = append(names, s)
	}
	rows.Close()
	want := []string{"Files", "FilesDomainIdx", "FilesFlagsIdx", "FilesRelativePathIdx", "Properties"}
	sort.Strings(names)
	if !reflect.DeepEqual(names, want) {
		t.Errorf("schema objects = %v; want %v", names, want)
	}
}

// SizesOf gives every asked-for row that exists exactly once, with its flags and size,
// across batch boundaries, whatever order and duplicates the IDs come in, through the index
// lookups and through SQLite alike; IDs without a row are skipped; the callback's error
// ends it.
func TestManifestDBSizesOf(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "Manifest.db")
	recs := testRecords(2*sizesBatch + 77)
	writeDB(t, path, recs)
	db, err := OpenManifestDB(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	want := map[string]Record{}
	var ids []string
	for i := len(recs) - 1; i >= 0; i -= 2 { // every other row, backwards, across batches
		want[recs[i].FileID] = recs[i]
		ids = append(ids, recs[i].FileID)
	}
	ids = append(ids, FileID("NoDomain", "x"), FileID("NoDomain", "y"))
	check := func(how string, walk func(fn func(id string, flags, size int64, rowErr error) error) error) {
		got := map[string]int{}
		err := walk(func(id string, flags, size int64, rowErr error) error {
			r, ok := want[id]
			switch {
			case rowErr != nil:
				return rowErr
			case !ok:
				return fmt.Errorf("row %s was not asked for", id)
			case flags != r.Flags || size != r.File.Size:
				return fmt.Errorf("row %s: flags %d, size %d; want %d, %d", id, flags, size, r.Flags, r.File.Size)
			}
			got[id]++
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v", how, err)
		}
		if len(got) != len(want) {
			t.Fatalf("%s gave %d rows, want %d", how, len(got), len(want))
		}
		for id, n := range got {
			if n != 1 {
				t.Fatalf("%s: row %s given %d times", how, id, n)
			}
		}
	}
	check("SizesOf", func(fn func(string, int64, int64, error) error) error { return db.SizesOf(ctx, ids, fn) })
	if _, err := lookupSizes(ctx, path, ids); err != nil {
		t.Fatalf("the index lookups refused the file: %v", err)
	}
	// SQLite's way, for a file the lookups refuse: the same rows in a Files table with one
	// more column, which sqlitefile leaves to SQLite.
	other := filepath.Join(t.TempDir(), "other.db")
	raw, err := sql.Open("sqlite", sqliteURI(other, ""))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(`CREATE TABLE Files (fileID TEXT PRIMARY KEY, domain TEXT, relativePath TEXT, flags INTEGER, file BLOB, extra TEXT)`); err != nil {
		t.Fatal(err)
	}
	tx, err := raw.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		blob, err := EncodeMBFile(r.File)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(`INSERT INTO Files VALUES (?, ?, ?, ?, ?, 'x')`, r.FileID, r.Domain, r.RelativePath, r.Flags, blob); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	if _, err := lookupSizes(ctx, other, ids); err == nil {
		t.Fatal("the index lookups read a Files table of another shape")
	}
	odb, err := OpenManifestDB(other)
	if err != nil {
		t.Fatal(err)
	}
	defer odb.Close()
	check("SQLite", func(fn func(string, int64, int64, error) error) error { return odb.SizesOf(ctx, ids, fn) })
	stop := errors.New("stop")
	if err := db.SizesOf(ctx, ids, func(string, int64, int64, error) error { return stop }); err != stop {
		t.Errorf("SizesOf returned %v; want the callback's error", err)
	}
	if err := db.SizesOf(ctx, nil, func(string, int64, int64, error) error { return stop }); err != nil {
		t.Errorf("SizesOf of no IDs: %v", err)
	}
}

func TestManifestDBReadOnlyLeavesFileUntouched(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "Manifest.db")
	writeDB(t, path, testRecords(50))
	before := fileSum(t, path)
	stBefore, _ := os.Stat(path)

	db, err := OpenManifestDB(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Count(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db.Each(ctx, func(Record) error { return nil }); err != nil {
		t.Fatal(err)
	}
	// While open: no side files.
	assertOnlyFile(t, dir, "Manifest.db")
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	assertOnlyFile(t, dir, "Manifest.db")
	if after := fileSum(t, path); after != before {
		t.Error("Manifest.db bytes changed after a read-only open")
	}
	stAfter, _ := os.Stat(path)
	if !stAfter.ModTime().Equal(stBefore.ModTime()) {
		t.Errorf("Manifest.db mtime changed: %v → %v", stBefore.ModTime(), stAfter.ModTime())
	}

	// A path with URI-special characters still opens the right file read-only.
	odd := filepath.Join(dir, "we?ird #%dir")
	if err := os.Mkdir(odd, 0o755); err != nil {
		t.Fatal(err)
	}
	writeDB(t, filepath.Join(odd, "Manifest.db"), testRecords(3))
	db2, err := OpenManifestDB(filepath.Join(odd, "Manifest.db"))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := db2.Count(ctx); err != nil || n != 3 {
		t.Errorf("Count in odd dir = %d, %v; want 3", n, err)
	}
	db2.Close()
	assertOnlyFile(t, odd, "Manifest.db")

	if _, err := OpenManifestDB(filepath.Join(dir, "missing.db")); err == nil {
		t.Error("OpenManifestDB(missing) succeeded")
	}
	assertOnlyFile(t, dir, "Manifest.db", "we?ird #%dir")
	notDB := filepath.Join(t.TempDir(), "Manifest.db")
	os.WriteFile(notDB, []byte("not a database at all, really not"), 0o644)
	if _, err := OpenManifestDB(notDB); err == nil {
		t.Error("OpenManifestDB(garbage) succeeded")
	}
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func assertOnlyFile(t *testing.T, dir string, want ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	sort.Strings(got)
	sort.Strings(want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("files in %s = %v; want %v", dir, got, want)
	}
}

func TestPlistsRoundTrip(t *testing.T) {
	date := time.Date(2026, 11, 22, 3, 4, 5, 0, time.UTC)
	st := Status{BackupState: "new", Date: date, IsFullBackup: true, SnapshotState: SnapshotFinished, UUID: "0A1B2C3D-0000-4000-8000-000000000001", Version: "3.3"}
	b, err := st.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("bplist00")) {
		t.Error("Status.plist is not binary")
	}
	p := filepath.Join(t.TempDir(), "Status.plist")
	os.WriteFile(p, b, 0o644)
	gotSt, err := ReadStatus(p)
	if err != nil || !reflect.DeepEqual(gotSt, st) {
		t.Errorf("ReadStatus = %+v, %v; want %+v", gotSt, err, st)
	}
	var keys map[string]any
	plist.Unmarshal(b, &keys)
	if len(keys) != 6 {
		t.Errorf("Status.plist has %d keys; want the 6 Apple keys", len(keys))
	}

	m := Manifest{BackupKeyBag: []byte{1, 2, 3}, IsEncrypted: true, Lockdown: map[string]any{"ProductVersion": "17.0", "UniqueDeviceID": "X"},
		Applications: map[string]any{"com.example": map[string]any{"CFBundleIdentifier": "com.example"}},
		Date:         date, Version: "10.0", SystemDomainsVersion: "24.0", WasPasscodeSet: true, ManifestKey: bytes.Repeat([]byte{9}, 44)}
	b, err = m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	p = filepath.Join(t.TempDir(), "Manifest.plist")
	os.WriteFile(p, b, 0o644)
	gotM, err := ReadManifest(p)
	if err != nil || !reflect.DeepEqual(gotM, m) {
		t.Errorf("ReadManifest = %+v, %v; want %+v", gotM, err, m)
	}
	os.WriteFile(p, nil, 0o644)
	if _, err := ReadManifest(p); err == nil {
		t.Error("ReadManifest(empty file) succeeded; want error (devices answer 205)")
	}

	info := Info{BuildVersion: "21A329", DeviceName: "Sim", DisplayName: "Sim", GUID: "0123456789ABCDEF0123456789ABCDEF",
		InstalledApplications: []string{"com.example"}, LastBackupDate: date, ProductType: "iPhone15,2", ProductVersion: "17.0",
		SerialNumber: "F00", TargetIdentifier: "00008030-001D35093EF2402E", TargetType: "Device", UniqueIdentifier: "00008030-001D35093EF2402E",
		ITunesFiles: map[string][]byte{"iTunesPrefs": {1}}, ITunesSettings: map[string]any{"k": "v"}, ITunesVersion: "10.0.1", PhoneNumber: "+1 555"}
	b, err = info.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("<?xml")) || !bytes.Contains(b, []byte("<key>Build Version</key>")) {
		t.Errorf("Info.plist is not XML with Apple's keys:\n%s", b)
	}
	p = filepath.Join(t.TempDir(), "Info.plist")
	os.WriteFile(p, b, 0o644)
	gotI, err := ReadInfo(p)
	if err != nil || !reflect.DeepEqual(gotI, info) {
		t.Errorf("ReadInfo = %+v, %v; want %+v", gotI, err, info)
	}

	// pymobiledevice3 writes GUID as data.
	py, _ := plist.Marshal(map[string]any{"GUID": []byte{0xde, 0xad, 0xbe, 0xef}, "Device Name": "py"}, plist.XMLFormat)
	gotI, err = ParseInfo(py)
	if err != nil || gotI.GUID != "DEADBEEF" || gotI.DeviceName != "py" {
		t.Errorf("ParseInfo(GUID data) = %+v, %v; want GUID DEADBEEF", gotI, err)
	}
}
