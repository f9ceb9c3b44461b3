package backupfmt

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"snapback/internal/sqlitefile"
)

// filesSchema is the Files table of every iOS 10+ Manifest.db, compared with whitespace
// collapsed and case folded (normalSQL). Only a table of exactly this shape is read by sqlitefile
// (issue #16: a commit reads every row, and SQLite cost about 6 µs a row); anything else
// goes through SQLite.
const filesSchema = "create table files(fileid text primary key,domain text,relativepath text,flags integer,file blob)"

// filesTable is the Files table of a Manifest.db read with sqlitefile.
type filesTable struct {
	f    *sqlitefile.File
	root uint32
}

// openFilesTable opens path's Files table for sqlitefile; an error means the caller reads
// the file through SQLite (which then says what is wrong with it, if anything).
func openFilesTable(path string) (*filesTable, error) {
	f, err := sqlitefile.Open(path)
	if err != nil {
		return nil, err
	}
	root, sql, err := f.Table("Files")
	if err == nil && normalSQL(sql) != filesSchema {
		err = fmt.Errorf("the Files table's schema is %q", sql)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return &filesTable{f: f, root: root}, nil
}

func (t *filesTable) Close() error { return t.f.Close() }

// normalSQL folds case and drops the whitespace SQL allows anywhere between tokens: runs of
// it become one space, and none is kept beside "(", ")" or ",".
func normalSQL(sql string) string {
	s := strings.Join(strings.Fields(strings.ToLower(sql)), " ")
	for _, p := range []string{"(", ")", ","} {
		s = strings.ReplaceAll(strings.ReplaceAll(s, " "+p, p), p+" ", p)
	}
	return s
}

// eachRow calls fn with the fileID, flags and file columns of every Files row in rowid
// order. The slices are valid only during the call; nil means NULL, and flags is 0 for
// NULL. A fileID that is a number is passed as its decimal text, as database/sql scans it
// into a string; flags that are not an integer, or a file that is a number, end the walk
// with an error (a device writes neither).
func (t *filesTable) eachRow(fn func(id []byte, flags int64, file []byte) error) error {
	var num []byte
	return t.f.Rows(t.root, 5, func(row []sqlitefile.Value) error {
		var id []byte
		if v := row[0]; v.TextOrBlob() {
			id = v.Bytes
		} else if f, ok := v.Float(); ok {
			num = strconv.AppendFloat(num[:0], f, 'g', -1, 64)
			id = num
		} else if n, ok := v.Int(); ok {
			num = strconv.AppendInt(num[:0], n, 10)
			id = num
		}
		flags, file, err := flagsAndFile(id, row)
		if err != nil {
			return err
		}
		return fn(id, flags, file)
	})
}

// flagsAndFile reads a Files row's flags (0 for NULL) and file (nil for NULL) columns; flags
// that are not an integer, or a file that is a number, are an error naming the row.
func flagsAndFile(id []byte, row []sqlitefile.Value) (flags int64, file []byte, err error) {
	flags, ok := row[3].Int()
	if !ok && !row[3].Null() {
		return 0, nil, fmt.Errorf("row %q: flags of serial type %d, not an integer", id, row[3].Type)
	}
	if v := row[4]; v.TextOrBlob() {
		file = v.Bytes
	} else if !v.Null() {
		return 0, nil, fmt.Errorf("row %q: file of serial type %d, not a blob", id, v.Type)
	}
	return flags, file, nil
}

// foundSize is one row lookupSizes found.
type foundSize struct {
	id          string
	flags, size int64
	err         error // the row's file or flags did not decode
}

// lookupSizes finds the Files rows of ids through the fileID index with sqlitefile (the index
// and table pages read one at a time, interior pages kept), in the order of ids, skipping
// the IDs without a row. Any error (not a file sqlitefile reads, a damaged tree, an index
// entry pointing at no row or at another fileID's row) means the caller asks SQLite instead,
// for all of ids.
func lookupSizes(ctx context.Context, path string, ids []string) ([]foundSize, error) {
	t, err := openFilesTable(path)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	// The PRIMARY KEY's index: with the schema checked (openFilesTable), it is fileID's.
	idx, err := t.f.Index("sqlite_autoindex_Files_1")
	if err != nil {
		return nil, err
	}
	out := make([]foundSize, 0, len(ids))
	for i, id := range ids {
		if i%256 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		rowid, ok, err := t.f.SeekText(idx, []byte(id))
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		f := foundSize{id: id}
		found, err := t.f.Row(t.root, rowid, 5, func(row []sqlitefile.Value) error {
			if !row[0].TextOrBlob() || string(row[0].Bytes) != id {
				return fmt.Errorf("the index entry of %s points at row %d, which is not its row", id, rowid)
			}
			flags, blob, err := flagsAndFile(row[0].Bytes, row)
			if err != nil {
				f.err = fmt.Errorf("read Manifest.db %w", err)
				return nil
			}
			f.flags = flags
			f.size, f.err = rowSize(id, blob)
			return nil
		})
		switch {
		case err != nil:
			return nil, err
		case !found:
			return nil, fmt.Errorf("the index entry of %s points at row %d, which does not exist", id, rowid)
		}
		out = append(out, f)
	}
	return out, nil
}
