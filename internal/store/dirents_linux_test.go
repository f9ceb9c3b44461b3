//go:build linux

package store

import (
	"encoding/binary"
	"strings"
	"testing"
)

// A directory record is read only within its own length, and a malformed one is an error,
// never a name read past its end: the listing and the clone both read records this way.
func TestNextRecordStaysInsideTheRecord(t *testing.T) {
	rec := func(ino uint64, typ uint8, name string, reclen int) []byte {
		b := make([]byte, max(reclen, 19+len(name)))
		binary.NativeEndian.PutUint64(b[0:8], ino)
		binary.NativeEndian.PutUint16(b[16:18], uint16(reclen))
		b[18] = typ
		copy(b[19:], name)
		return b
	}
	two := append(rec(7, 8, "first\x00", 32), rec(9, 4, "sub\x00", 24)...)
	r, rest, err := nextRecord(two)
	if err != nil || r.ino != 7 || r.typ != 8 || string(r.nameZ) != "first\x00" || string(r.name()) != "first" || len(rest) != 24 {
		t.Fatalf("first record: %+v, %d bytes left, %v", r, len(rest), err)
	}
	if r, rest, err = nextRecord(rest); err != nil || r.ino != 9 || string(r.name()) != "sub" || len(rest) != 0 {
		t.Fatalf("second record: %+v, %d bytes left, %v", r, len(rest), err)
	}
	if n := countRecords(two); n != 2 {
		t.Errorf("countRecords = %d, want 2", n)
	}
	for _, c := range []struct {
		what string
		b    []byte
		want string
	}{
		{"shorter than a header", make([]byte, 18), "truncated"},
		{"length below the header", rec(1, 8, "x\x00", 18), "bad directory record length 18"},
		{"length past the buffer", rec(1, 8, "x\x00", 24)[:22], "bad directory record length 24"},
		{"name without its NUL", rec(1, 8, strings.Repeat("x", 13), 32), "without a name end"},
	} {
		if _, _, err := nextRecord(c.b); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want an error saying %q", c.what, err, c.want)
		}
	}
	dots := func(name string) bool { return record{nameZ: []byte(name + "\x00")}.isDots() }
	if !dots(".") || !dots("..") || dots("...") || dots(".x") {
		t.Error("isDots: only . and .. are the folder's own entries")
	}
}
