package backupfmt

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"howett.net/plist"
)

// TestBPlistWriterAgainstHowett checks the hand-written encoder against the reference
// decoder across the size classes: ints of every width, negative and above-int64 values,
// ASCII and UTF-16 strings, long counts, > 256 objects (2-byte refs) and > 64 KiB bodies
// (wider offsets).
func TestBPlistWriterAgainstHowett(t *testing.T) {
	many := make([]any, 300)
	for i := range many {
		many[i] = int64(i * 1000)
	}
	big := bytes.Repeat([]byte{0xaa}, 70_000)
	doc := bpDict{
		{"ints", []any{int64(0), int64(255), int64(256), int64(65535), int64(65536), int64(math.MaxUint32), int64(math.MaxUint32 + 1), int64(math.MaxInt64), int64(-1), int64(math.MinInt64)}},
		{"big uint", uint64(math.MaxUint64)},
		{"ascii", strings.Repeat("x", 300)},
		{"utf16", "Ünïcode ファイル 🎉"},
		{"empty", ""},
		{"data", big},
		{"uid", []any{plist.UID(0), plist.UID(255), plist.UID(256), plist.UID(70000)}},
		{"many", many},
		{"strings", []string{"a", "b"}},
	}
	b := encodeBPlist(doc)
	var got map[string]any
	if _, err := plist.Unmarshal(b, &got); err != nil {
		t.Fatalf("howett cannot read the output: %v", err)
	}
	want := map[string]any{
		"ints":     []any{uint64(0), uint64(255), uint64(256), uint64(65535), uint64(65536), uint64(math.MaxUint32), uint64(math.MaxUint32 + 1), uint64(math.MaxInt64), int64(-1), int64(math.MinInt64)},
		"big uint": uint64(math.MaxUint64),
		"ascii":    strings.Repeat("x", 300),
		"utf16":    "Ünïcode ファイル 🎉",
		"empty":    "",
		"data":     big,
		"uid":      []any{plist.UID(0), plist.UID(255), plist.UID(256), plist.UID(70000)},
		"strings":  []any{"a", "b"},
	}
	m := make([]any, len(many))
	for i := range many {
		m[i] = uint64(i * 1000)
	}
	want["many"] = m
	for k, w := range want {
		if !reflect.DeepEqual(got[k], w) {
			t.Errorf("%s = %#v; want %#v", k, got[k], w)
		}
	}
}

func TestMBFileExtremeValues(t *testing.T) {
	f := MBFile{RelativePath: strings.Repeat("é", 40), LastModified: math.MinInt64, Birth: math.MaxInt64, InodeNumber: math.MaxUint64,
		Size: 1 << 40, Mode: 0o100644, Digest: []byte{}, Target: "x"}
	b, err := EncodeMBFile(f)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeMBFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(normalise(got), normalise(f)) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, f)
	}
}

func BenchmarkEncodeMBFile(b *testing.B) {
	f := sampleFiles()[0]
	for b.Loop() {
		EncodeMBFile(f)
	}
}

// TestDecodeMBFileFromPython decodes an archive written by another implementation (Python's
// plistlib, testdata/mbfile_plistlib.bplist, built in the object order of real backups with
// Digest, EncryptionKey and ExtendedAttributes), so the decoder is not only tested against
// this package's own encoder.
func TestDecodeMBFileFromPython(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "mbfile_plistlib.bplist"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeMBFile(b)
	if err != nil {
		t.Fatal(err)
	}
	digest := make([]byte, 20)
	key := []byte{3, 0, 0, 0}
	for i := range 20 {
		digest[i] = byte(i)
	}
	for i := range 40 {
		key = append(key, byte(i))
	}
	want := MBFile{RelativePath: "Library/SMS/sms.db", LastModified: 1609459200, LastStatusChange: 1609459201, Birth: 1577836800,
		Size: 4096, Mode: 0o100644, InodeNumber: 123456, UserID: 501, GroupID: 501, ProtectionClass: 3,
		Digest: digest, EncryptionKey: key}
	var xattrs map[string][]byte
	if _, err := plist.Unmarshal(got.ExtendedAttributes, &xattrs); err != nil || string(xattrs["com.apple.test"]) != "xattr" {
		t.Errorf("ExtendedAttributes = %q (%v); want an embedded plist", got.ExtendedAttributes, err)
	}
	got.ExtendedAttributes = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("decoded\n %+v\nwant\n %+v", got, want)
	}
}
