package sqlitefile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testdata/small.db is a Manifest.db written by modernc SQLite with 512-byte pages (so the
// Files table is three levels deep and large archives overflow), NULLs, a number written
// into the TEXT fileID, and rows deleted and rewritten afterwards. testdata/small.rows is
// what SQLite itself returned for every row, in rowid order: quote(fileID), quote(flags),
// typeof(file), length(file), hex of the file's first 8 bytes.
const smallDB = "testdata/small.db"

func quote(v Value) string {
	switch {
	case v.Null():
		return "NULL"
	case v.Type >= 13 && v.Type%2 == 1:
		return "'" + strings.ReplaceAll(string(v.Bytes), "'", "''") + "'"
	}
	if n, ok := v.Int(); ok {
		return fmt.Sprint(n)
	}
	return fmt.Sprintf("<type %d>", v.Type)
}

func typeOf(v Value) string {
	switch {
	case v.Null():
		return "null"
	case v.Type >= 12 && v.Type%2 == 0:
		return "blob"
	case v.Type >= 13:
		return "text"
	case v.Type == 7:
		return "real"
	}
	return "integer"
}

// TestRowsMatchSQLite: every row of the Files table reads as SQLite read it.
func TestRowsMatchSQLite(t *testing.T) {
	want, err := os.ReadFile("testdata/small.rows")
	if err != nil {
		t.Fatal(err)
	}
	f, err := Open(smallDB)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	root, sql, err := f.Table("files") // case ignored, as in SQLite
	if err != nil || !strings.HasPrefix(sql, "CREATE TABLE Files (fileID TEXT PRIMARY KEY") {
		t.Fatalf("Table: root %d, %q, %v", root, sql, err)
	}
	var got strings.Builder
	err = f.Rows(root, 5, func(row []Value) error {
		head := row[4].Bytes[:min(8, len(row[4].Bytes))]
		fmt.Fprintf(&got, "%s %s %s %d %X\n", quote(row[0]), quote(row[3]), typeOf(row[4]), len(row[4].Bytes), head)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != string(want) {
		g, w := strings.Split(got.String(), "\n"), strings.Split(string(want), "\n")
		for i := range min(len(g), len(w)) {
			if g[i] != w[i] {
				t.Fatalf("%d rows read, SQLite %d; row %d reads\n  %s\nSQLite read\n  %s", len(g)-1, len(w)-1, i, g[i], w[i])
			}
		}
		t.Fatalf("%d rows read, SQLite %d", len(g)-1, len(w)-1)
	}
	if _, _, err := f.Table("Nope"); err == nil {
		t.Fatal("Table found a table the file does not have")
	}
}

// TestOpenRefusesOtherFiles: what is not a UTF-8 SQLite file with a sane header is
// ErrUnsupported, so the caller uses SQLite.
func TestOpenRefusesOtherFiles(t *testing.T) {
	good, err := os.ReadFile(smallDB)
	if err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func([]byte) []byte{
		"not SQLite": func(b []byte) []byte {
			return []byte("bplist00 and then some bytes that are not a database at all, long enough for a header......................")
		},
		"short":        func(b []byte) []byte { return b[:60] },
		"page size 3":  func(b []byte) []byte { binary.BigEndian.PutUint16(b[16:], 3); return b },
		"UTF-16":       func(b []byte) []byte { binary.BigEndian.PutUint32(b[56:], 2); return b },
		"odd fraction": func(b []byte) []byte { b[21] = 65; return b },
	} {
		path := filepath.Join(t.TempDir(), "x.db")
		if err := os.WriteFile(path, edit(append([]byte(nil), good...)), 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := Open(path)
		if !errors.Is(err, ErrUnsupported) {
			if f != nil {
				f.Close()
			}
			t.Errorf("%s: Open = %v, want ErrUnsupported", name, err)
		}
	}
}

// TestDamageIsAnError: a child page number out of range, a cell pointer past its page and
// a child that points back at the root end the walk with an error naming the page.
func TestDamageIsAnError(t *testing.T) {
	good, err := os.ReadFile(smallDB)
	if err != nil {
		t.Fatal(err)
	}
	f, err := Open(smallDB)
	if err != nil {
		t.Fatal(err)
	}
	root, _, err := f.Table("Files")
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	rootOff := int(root-1) * 512
	if good[rootOff] != 0x05 {
		t.Fatalf("the root page is of type %#x; the test wants an interior page", good[rootOff])
	}
	for name, c := range map[string]struct {
		edit func(b []byte)
		want string
	}{
		"child out of range": {func(b []byte) { binary.BigEndian.PutUint32(b[rootOff+8:], 1<<30) }, "out of range"},
		"cell past the page": {func(b []byte) { binary.BigEndian.PutUint16(b[rootOff+12:], 600) }, "cell 0 at 600"},
		"loop":               {func(b []byte) { binary.BigEndian.PutUint32(b[rootOff+8:], root) }, "loop"},
	} {
		path := filepath.Join(t.TempDir(), "x.db")
		b := append([]byte(nil), good...)
		c.edit(b)
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		err = f.Rows(root, 5, func([]Value) error { return nil })
		f.Close()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Rows = %v, want an error saying %q", name, err, c.want)
		}
	}
}

// FuzzRows: damaged database bytes never make the reader panic, loop or allocate beyond
// the file: it ends with an error or with rows.
func FuzzRows(f *testing.F) {
	good, err := os.ReadFile(smallDB)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	flipped := append([]byte(nil), good...)
	flipped[len(good)-700] ^= 0xff
	f.Add(flipped)
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "x.db")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		r, err := Open(path)
		if err != nil {
			return
		}
		defer r.Close()
		root, _, err := r.Table("Files")
		if err != nil {
			root = 2
		}
		rows := 0
		_ = r.Rows(root, 5, func(row []Value) error {
			rows++
			for _, v := range row {
				v.Int()
				v.Float()
			}
			return nil
		})
		if limit := int(r.pages) * int(r.pageSize) / 4; rows > limit {
			t.Fatalf("%d rows from %d pages", rows, r.pages)
		}
	})
}
