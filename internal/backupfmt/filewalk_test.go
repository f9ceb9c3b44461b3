package backupfmt

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// walkRow is what EachID and EachSize report for one row.
type walkRow struct {
	id          string
	flags, size int64
}

// readBoth reads path's rows with EachID and EachSize, once through the b-tree walker and
// once through SQLite, and fails the test unless both ways agree. It returns the rows and
// whether the walker read the file (rather than leaving it to SQLite).
func readBoth(t *testing.T, path string, sizes bool) ([]walkRow, bool) {
	t.Helper()
	read := func(sqliteOnly bool) ([]walkRow, error) {
		db, err := OpenManifestDB(path)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		db.sqliteOnly = sqliteOnly
		var rows []walkRow
		if sizes {
			err = db.EachSize(context.Background(), func(id string, flags, size int64) error {
				rows = append(rows, walkRow{id, flags, size})
				return nil
			})
		} else {
			err = db.EachID(context.Background(), func(id string, flags int64) error {
				rows = append(rows, walkRow{id: id, flags: flags})
				return nil
			})
		}
		return rows, err
	}
	fast, ferr := read(false)
	slow, serr := read(true)
	if (ferr == nil) != (serr == nil) {
		t.Fatalf("walker error %v, SQLite error %v", ferr, serr)
	}
	if !slices.Equal(fast, slow) {
		t.Fatalf("walker read %d rows, SQLite %d; first differences:\n%s", len(fast), len(slow), firstDiff(fast, slow))
	}
	w, err := openFilesTable(path)
	if err == nil {
		w.Close()
	}
	return fast, err == nil
}

func firstDiff(a, b []walkRow) string {
	var sb strings.Builder
	for i := 0; i < max(len(a), len(b)) && sb.Len() < 400; i++ {
		var x, y walkRow
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if x != y {
			fmt.Fprintf(&sb, "  %d: walker %+v, SQLite %+v\n", i, x, y)
		}
	}
	return sb.String()
}

// TestFilesWalkerMatchesSQLite: the b-tree walker reads exactly what SQLite reads, row for
// row and in the same order, from Manifest.db files shaped the ways a device can shape them:
// the writer's bulk-built file; small pages, so the table is several levels deep and large
// archives spill onto overflow pages; rows deleted and updated in place afterwards (free
// pages, cells moved), as a device that keeps its Manifest.db between backups leaves it;
// NULL and numeric columns.
func TestFilesWalkerMatchesSQLite(t *testing.T) {
	dir := t.TempDir()

	bulk := filepath.Join(dir, "bulk.db")
	writeDB(t, bulk, testRecords(3000))
	for _, sizes := range []bool{false, true} {
		rows, walked := readBoth(t, bulk, sizes)
		if !walked || len(rows) != 3000 {
			t.Fatalf("bulk file: walker used %v, %d rows", walked, len(rows))
		}
	}

	for _, pageSize := range []int{512, 1024, 65536} {
		path := filepath.Join(dir, fmt.Sprintf("p%d.db", pageSize))
		makeOddDB(t, path, pageSize, 2500)
		rows, walked := readBoth(t, path, true)
		if !walked {
			t.Fatalf("page size %d: the walker refused the file", pageSize)
		}
		nulls := 0
		for _, r := range rows {
			if r.id == "" {
				nulls++
			}
		}
		t.Logf("page size %d: %d rows, %d with a NULL fileID", pageSize, len(rows), nulls)
		if len(rows) < 2000 || nulls == 0 {
			t.Fatalf("page size %d: %d rows, %d NULL fileIDs; the file is not the mix it should be", pageSize, len(rows), nulls)
		}
	}
}

// makeOddDB writes n rows with the Manifest.db schema at the given page size: archives of
// 0.3-20 KB (long paths and extended attributes, so small pages overflow), NULL fileIDs,
// flags and files, a numeric fileID, then deletes a tenth of the rows and rewrites another
// tenth with larger archives.
func makeOddDB(t *testing.T, path string, pageSize, n int) {
	t.Helper()
	db, err := sql.Open("sqlite", sqliteURI(path, fmt.Sprintf("_pragma=page_size(%d)", pageSize)))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(schemaTables + schemaIndexes); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(uint64(pageSize), 7))
	archive := func(i int, grow int) []byte {
		f := MBFile{RelativePath: strings.Repeat("Library/Caches/", 1+rng.IntN(20+grow)) + fmt.Sprint(i),
			Size: rng.Int64N(1 << 40), Mode: 0o100644, LastModified: 1700000000 + int64(i)}
		if rng.IntN(4) == 0 {
			f.ExtendedAttributes = make([]byte, rng.IntN(8000+grow*100))
		}
		b, err := EncodeMBFile(f)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		var id, flags, file any = fmt.Sprintf("%040x", rng.Uint64()), int64(1 + rng.IntN(3)), archive(i, 0)
		switch i % 97 {
		case 1:
			id = nil
		case 2:
			flags = nil
		case 3:
			file = nil
		case 4:
			id = int64(i) // a number where the device writes text
		}
		if _, err := tx.Exec(`INSERT INTO Files (fileID, domain, relativePath, flags, file) VALUES (?, ?, ?, ?, ?)`,
			id, "HomeDomain", fmt.Sprint("f", i), flags, file); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`DELETE FROM Files WHERE rowid % 10 = 3`); err != nil {
		t.Fatal(err)
	}
	for i := 5; i < n; i += 10 {
		if _, err := db.Exec(`UPDATE Files SET file = ? WHERE rowid = ?`, archive(i, 30), i); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFilesWalkerLeavesOtherFilesToSQLite: a database the walker does not read (another
// schema for Files, UTF-16 text) is read through SQLite, with the same rows.
func TestFilesWalkerLeavesOtherFilesToSQLite(t *testing.T) {
	dir := t.TempDir()
	for name, setup := range map[string]string{
		"schema": `CREATE TABLE Files (fileID TEXT PRIMARY KEY, domain TEXT, relativePath TEXT, flags INTEGER, file BLOB, extra TEXT);`,
		"utf16":  `PRAGMA encoding = 'UTF-16le'; ` + schemaTables,
	} {
		path := filepath.Join(dir, name+".db")
		db, err := sql.Open("sqlite", sqliteURI(path, ""))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(setup); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(`INSERT INTO Files (fileID, domain, relativePath, flags, file) VALUES ('ab', 'd', 'p', 1, NULL)`); err != nil {
			t.Fatal(err)
		}
		db.Close()
		rows, walked := readBoth(t, path, false)
		if walked || len(rows) != 1 || rows[0].id != "ab" {
			t.Fatalf("%s: walker used %v, rows %+v; want SQLite to read the one row", name, walked, rows)
		}
	}
	// The same schema spelt with other whitespace and case is the walker's.
	path := filepath.Join(dir, "spacing.db")
	db, err := sql.Open("sqlite", sqliteURI(path, ""))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("create table Files(fileID text primary key,domain TEXT ,\n\trelativePath TEXT, flags INTEGER , file BLOB )"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO Files VALUES ('ab', 'd', 'p', 1, NULL)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if rows, walked := readBoth(t, path, false); !walked || len(rows) != 1 {
		t.Fatalf("spacing: walker used %v, rows %+v; want the walker", walked, rows)
	}
}

// BenchmarkManifestRows prints what reading every row of a 100,000-row Manifest.db costs,
// straight from the b-tree and through SQLite, alternating (ns a row, min and median of 5;
// the file is in the page cache, as it is when a commit reads what the device just sent).
func BenchmarkManifestRows(b *testing.B) {
	const n = 100000
	path := filepath.Join(b.TempDir(), "Manifest.db")
	writeDB(b, path, testRecords(n))
	db, err := OpenManifestDB(path)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	read := map[string]func() error{
		"EachID": func() error {
			return db.EachID(ctx, func(string, int64) error { return nil })
		},
		"EachSize": func() error {
			return db.EachSize(ctx, func(string, int64, int64) error { return nil })
		},
	}
	for _, name := range []string{"EachID", "EachSize"} {
		times := map[bool][]time.Duration{}
		for i := range 10 {
			sqliteOnly := (i%4 == 1 || i%4 == 2) // b-tree, SQLite, SQLite, b-tree, …
			db.sqliteOnly = sqliteOnly
			t0 := time.Now()
			if err := read[name](); err != nil {
				b.Fatal(err)
			}
			times[sqliteOnly] = append(times[sqliteOnly], time.Since(t0))
		}
		for _, sqliteOnly := range []bool{false, true} {
			ts := times[sqliteOnly]
			slices.Sort(ts)
			way := "b-tree"
			if sqliteOnly {
				way = "SQLite"
			}
			b.Logf("%-8s %-6s %d rows: min %6.0f ns/row, median %6.0f ns/row", name, way, n,
				float64(ts[0])/n, float64(ts[len(ts)/2])/n)
		}
	}
}

// The lookups through the fileID index (lookupSizes, what SizesOf uses first) find exactly
// the rows SQLite finds, with the same flags and sizes (and a row error where SQLite's row
// does not decode), for every text fileID and for absent ones, in files of every shape the
// walker reads: a bulk-built file, and odd ones with small pages (deep trees, payloads on
// overflow pages), NULL and numeric fileIDs, NULL flags and files, deleted and rewritten rows.
func TestLookupSizesMatchesSQLite(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	paths := []string{filepath.Join(dir, "bulk.db")}
	writeDB(t, paths[0], testRecords(20000))
	for _, pageSize := range []int{512, 1024, 65536} {
		p := filepath.Join(dir, fmt.Sprintf("p%d.db", pageSize))
		makeOddDB(t, p, pageSize, 2500)
		paths = append(paths, p)
	}
	for _, path := range paths {
		name := filepath.Base(path)
		db, err := OpenManifestDB(path)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		rows, err := db.db.Query(`SELECT fileID FROM Files WHERE typeof(fileID) = 'text'`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var id string
			rows.Scan(&id)
			ids = append(ids, id)
		}
		rows.Close()
		for i := range 50 {
			ids = append(ids, fmt.Sprintf("%040x", i), "", "zz")
		}
		found, err := lookupSizes(ctx, path, ids)
		if err != nil {
			t.Fatalf("%s: lookupSizes: %v", name, err)
		}
		got := map[string]foundSize{}
		for _, f := range found {
			got[f.id] = f
		}
		want := 0
		for _, id := range ids {
			r, err := db.Get(ctx, id)
			if errors.Is(err, ErrNotFound) {
				if _, ok := got[id]; ok {
					t.Fatalf("%s: %q found, SQLite has no such row", name, id)
				}
				continue
			}
			want++
			f, ok := got[id]
			switch {
			case !ok:
				t.Fatalf("%s: %q not found, SQLite has it", name, id)
			case (err == nil) != (f.err == nil):
				t.Fatalf("%s: %q: row error %v, SQLite says %v", name, id, f.err, err)
			case err == nil && (f.flags != r.Flags || f.size != r.File.Size):
				t.Fatalf("%s: %q: flags %d, size %d; SQLite %d, %d", name, id, f.flags, f.size, r.Flags, r.File.Size)
			}
		}
		if len(found) != want || want < 2000 {
			t.Fatalf("%s: %d rows found, SQLite %d", name, len(found), want)
		}
		db.Close()
	}
}

// A damaged file never makes the lookups panic or loop: each of a few hundred files with
// bytes changed somewhere past the header either answers or fails (SizesOf then asks
// SQLite).
func TestLookupSizesSurvivesDamage(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	clean := filepath.Join(dir, "clean.db")
	makeOddDB(t, clean, 512, 1500)
	data, err := os.ReadFile(clean)
	if err != nil {
		t.Fatal(err)
	}
	db, err := OpenManifestDB(clean)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	db.EachID(ctx, func(id string, _ int64) error {
		if len(ids) < 300 {
			ids = append(ids, id)
		}
		return nil
	})
	db.Close()
	rng := rand.New(rand.NewPCG(3, 4))
	path := filepath.Join(dir, "damaged.db")
	failed := 0
	for range 300 {
		b := bytes.Clone(data)
		for range 1 + rng.IntN(8) {
			b[100+rng.IntN(len(b)-100)] = byte(rng.Uint32())
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := lookupSizes(ctx, path, ids); err != nil {
			failed++
		}
	}
	t.Logf("%d of 300 damaged files refused", failed)
}
