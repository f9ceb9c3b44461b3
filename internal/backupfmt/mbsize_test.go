package backupfmt

import (
	"math"
	"os"
	"path/filepath"
	"testing"
)

// checkMBFileSize: whenever both MBFileSize and DecodeMBFile accept an archive, they agree.
// MBFileSize may answer for a damaged archive that DecodeMBFile refuses (a cycle elsewhere
// in the plist, a field of the wrong type): it reads only what leads to Size.
func checkMBFileSize(t *testing.T, b []byte) (answered bool) {
	t.Helper()
	size, ok := MBFileSize(b)
	if !ok {
		return false
	}
	f, err := DecodeMBFile(b)
	if err != nil {
		return true
	}
	if f.Size != size {
		t.Fatalf("MBFileSize = %d, DecodeMBFile Size = %d", size, f.Size)
	}
	return true
}

// The fast size reader must give DecodeMBFile's size for this package's archives (every
// integer width) and for one written by Python's plistlib, and never panic or disagree on
// damaged input.
func TestMBFileSize(t *testing.T) {
	for _, n := range []int64{0, 1, 255, 256, 65535, 65536, 1<<32 - 1, 1 << 32, 1 << 40, math.MaxInt64, -1} {
		for _, mb := range sampleFiles() {
			mb.Size = n
			b, err := EncodeMBFile(mb)
			if err != nil {
				t.Fatal(err)
			}
			if !checkMBFileSize(t, b) {
				t.Fatalf("MBFileSize declined this package's own archive (Size %d)", n)
			}
		}
	}
	b, err := os.ReadFile(filepath.Join("testdata", "mbfile_plistlib.bplist"))
	if err != nil {
		t.Fatal(err)
	}
	if !checkMBFileSize(t, b) {
		t.Fatal("MBFileSize declined plistlib's archive")
	}
	good, _ := EncodeMBFile(sampleFiles()[0])
	for cut := 0; cut < len(good); cut++ {
		checkMBFileSize(t, good[:cut])
	}
	for i := range good {
		for _, x := range []byte{0x01, 0x10, 0x80, 0xff} {
			bad := append([]byte(nil), good...)
			bad[i] ^= x
			checkMBFileSize(t, bad)
		}
	}
}

// FuzzMBFileSize: never panics, and agrees with DecodeMBFile whenever both answer.
func FuzzMBFileSize(f *testing.F) {
	for _, mb := range sampleFiles() {
		b, _ := EncodeMBFile(mb)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkMBFileSize(t, b) })
}

// EachSize gives every row's size as Each decodes it.
func TestEachSize(t *testing.T) {
	p := filepath.Join(t.TempDir(), ManifestDBName)
	w, err := CreateManifestDB(p)
	if err != nil {
		t.Fatal(err)
	}
	for i, mb := range sampleFiles() {
		mb.Size = int64(i) * 1000003
		if err := w.Add(Record{FileID: FileID("HomeDomain", mb.RelativePath), Domain: "HomeDomain", RelativePath: mb.RelativePath,
			Flags: FlagFile, File: mb}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := OpenManifestDB(p)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	want := map[string]int64{}
	if err := db.Each(t.Context(), func(r Record) error { want[r.FileID] = r.File.Size; return nil }); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	if err := db.EachSize(t.Context(), func(id string, _, size int64) error { got[id] = size; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(want) < 2 || len(got) != len(want) {
		t.Fatalf("EachSize saw %d rows, Each %d", len(got), len(want))
	}
	for id, n := range want {
		if got[id] != n {
			t.Errorf("%s: EachSize %d, Each %d", id, got[id], n)
		}
	}
}
