// Package sqlitefile reads the rows of a table straight from an SQLite database file's
// b-tree (sqlite.org/fileformat2.html), for a caller that reads one known table of a large
// file in full and for whom a SQL engine costs more than the reading: a full backup's commit
// reads every row of the device's Manifest.db, about 6 µs a row through database/sql and
// pure-Go SQLite (issue #16). It also finds single rows through an index (SeekText, Row),
// for the few rows an incremental commit checks.
//
// It reads UTF-8 databases with the standard payload fractions; anything else is
// ErrUnsupported when the file is opened, and the caller uses SQLite. Every page number,
// offset and length comes from the file and is checked before use: damage found while
// reading rows (a page out of range, a cell past its page, a loop) is an error, never a
// panic. It reads the main file only, never a -wal file, as SQLite's immutable=1 mode does.
package sqlitefile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
)

// ErrUnsupported says the file is not one this package reads (not SQLite, another text
// encoding, an unusual header); the caller uses SQLite.
var ErrUnsupported = errors.New("not an SQLite file this reader reads")

// windowPages is the read-ahead: the leaf pages of a bulk-built table are mostly in file
// order, so one read serves many of them.
const windowPages = 64

// File is an SQLite database file opened for reading rows. Not safe for concurrent use.
type File struct {
	f        *os.File
	pageSize int64
	usable   int // page size minus the reserved bytes at each page's end
	pages    uint32
	win      []byte // pages [winFirst, winFirst+len(win)/pageSize)
	winFirst uint32
	visited  uint64 // pages read in this walk, to stop a loop in a damaged tree
	payload  []byte // a payload assembled from overflow pages
	leaf     []byte // the page a lookup read last (Seek, Row)
	interior map[uint32][]byte
}

// Open opens path and checks its header; ErrUnsupported (wrapped) when it is not a file
// this package reads.
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	r := &File{f: f}
	if err := r.init(); err != nil {
		f.Close()
		return nil, err
	}
	return r, nil
}

// Close closes the file.
func (r *File) Close() error { return r.f.Close() }

func (r *File) init() error {
	var h [100]byte
	if _, err := r.f.ReadAt(h[:], 0); err != nil {
		return fmt.Errorf("%w: header: %v", ErrUnsupported, err)
	}
	if string(h[:16]) != "SQLite format 3\x00" {
		return fmt.Errorf("%w: no SQLite header", ErrUnsupported)
	}
	ps := int64(binary.BigEndian.Uint16(h[16:18]))
	if ps == 1 {
		ps = 65536
	}
	if ps < 512 || ps > 65536 || ps&(ps-1) != 0 {
		return fmt.Errorf("%w: page size %d", ErrUnsupported, ps)
	}
	reserved := int64(h[20])
	// The payload fractions (64, 32, 32) are fixed by the format and the local-size
	// arithmetic relies on them; text must be UTF-8 (1) for callers to read it as Go strings.
	if h[21] != 64 || h[22] != 32 || h[23] != 32 || binary.BigEndian.Uint32(h[56:60]) != 1 || ps-reserved < 480 {
		return fmt.Errorf("%w: unusual header", ErrUnsupported)
	}
	fi, err := r.f.Stat()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnsupported, err)
	}
	if fi.Size()/ps >= math.MaxUint32/4 {
		return fmt.Errorf("%w: %d bytes", ErrUnsupported, fi.Size())
	}
	r.pageSize, r.usable, r.pages = ps, int(ps-reserved), uint32(fi.Size()/ps)
	r.win = make([]byte, 0, windowPages*ps)
	return nil
}

// Value is one column of a row: its serial type (0 NULL, 1-6 integers, 7 a float, 8 and 9
// the integers 0 and 1, even ≥ 12 a blob, odd ≥ 13 text) and its bytes.
type Value struct {
	Type  uint64
	Bytes []byte
}

// Null reports a NULL (or a column the row does not have).
func (v Value) Null() bool { return v.Type == 0 }

// Int returns an integer value; ok is false for any other type.
func (v Value) Int() (n int64, ok bool) {
	switch {
	case v.Type == 8:
		return 0, true
	case v.Type == 9:
		return 1, true
	case v.Type >= 1 && v.Type <= 6:
		n = int64(int8(v.Bytes[0])) // big-endian two's complement: the sign from the first byte
		for _, c := range v.Bytes[1:] {
			n = n<<8 | int64(c)
		}
		return n, true
	}
	return 0, false
}

// Float returns a float value; ok is false for any other type.
func (v Value) Float() (float64, bool) {
	if v.Type != 7 {
		return 0, false
	}
	return math.Float64frombits(binary.BigEndian.Uint64(v.Bytes)), true
}

// TextOrBlob reports text or a blob: a value whose bytes are the value itself.
func (v Value) TextOrBlob() bool { return v.Type >= 12 }

// Table returns the root page and the CREATE statement of the table named name (ASCII case
// ignored, as SQLite does), from sqlite_schema.
func (r *File) Table(name string) (root uint32, sql string, err error) {
	return r.schemaEntry("table", name)
}

// schemaEntry returns the root page and the statement of the one sqlite_schema entry of type
// kind ("table", "index") named name (ASCII case ignored).
func (r *File) schemaEntry(kind, name string) (root uint32, sql string, err error) {
	found := 0
	err = r.Rows(1, 5, func(row []Value) error {
		if string(row[0].Bytes) != kind || !strings.EqualFold(string(row[1].Bytes), name) {
			return nil
		}
		found++
		n, ok := row[3].Int()
		if !ok || n < 2 || n > int64(r.pages) {
			return fmt.Errorf("%s %s: root page %d of %d", kind, name, n, r.pages)
		}
		root, sql = uint32(n), string(row[4].Bytes)
		return nil
	})
	switch {
	case err != nil:
		return 0, "", err
	case found != 1:
		return 0, "", fmt.Errorf("%d %s entries named %s", found, kind, name)
	}
	return root, sql, nil
}

// Rows calls fn with the first cols columns of every row of the table b-tree rooted at page
// root, in rowid order. The values are valid only during the call; a row with fewer columns
// (older than an ALTER TABLE) has NULLs for the rest. An error from fn ends the walk and is
// returned as it is.
func (r *File) Rows(root uint32, cols int, fn func(row []Value) error) error {
	r.visited = 0
	row := make([]Value, cols)
	var fnErr error
	err := r.walk(root, 0, func(payload []byte) error {
		if err := decodeRecord(payload, row); err != nil {
			return err
		}
		fnErr = fn(row)
		return fnErr
	})
	if fnErr != nil {
		return fnErr
	}
	return err
}

// page returns page n (1-based), from the read-ahead window when it holds it.
func (r *File) page(n uint32) ([]byte, error) {
	if n == 0 || n > r.pages {
		return nil, fmt.Errorf("page %d out of range (1-%d)", n, r.pages)
	}
	if r.visited++; r.visited > 2*uint64(r.pages)+16 {
		return nil, errors.New("page references loop")
	}
	ps := r.pageSize
	if n < r.winFirst || int64(n-r.winFirst) >= int64(len(r.win))/ps {
		count := min(int64(windowPages), int64(r.pages-n+1))
		r.win = r.win[:count*ps]
		if _, err := r.f.ReadAt(r.win, int64(n-1)*ps); err != nil && err != io.EOF {
			return nil, err
		}
		r.winFirst = n
	}
	off := int64(n-r.winFirst) * ps
	return r.win[off : off+ps : off+ps], nil
}

// walk visits the table b-tree rooted at page n, passing each leaf cell's whole payload.
func (r *File) walk(n uint32, depth int, cell func(payload []byte) error) error {
	if depth > 20 {
		return errors.New("b-tree deeper than 20 levels")
	}
	p, err := r.page(n)
	if err != nil {
		return err
	}
	hdr := 0
	if n == 1 {
		hdr = 100 // the database header
	}
	typ := p[hdr]
	cells := int(binary.BigEndian.Uint16(p[hdr+3 : hdr+5]))
	ptrs := hdr + 8
	if typ == 0x05 {
		ptrs = hdr + 12
	}
	if ptrs+2*cells > r.usable {
		return fmt.Errorf("page %d: %d cells do not fit", n, cells)
	}
	switch typ {
	case 0x05: // interior: a child page per cell, and the right-most child
		// Copied out first: reading a child moves the window this page lives in.
		children := make([]uint32, 0, cells+1)
		for i := range cells {
			off := int(binary.BigEndian.Uint16(p[ptrs+2*i:]))
			if off < ptrs+2*cells || off+4 > r.usable {
				return fmt.Errorf("page %d: cell %d at %d", n, i, off)
			}
			children = append(children, binary.BigEndian.Uint32(p[off:]))
		}
		children = append(children, binary.BigEndian.Uint32(p[hdr+8:]))
		for _, c := range children {
			if err := r.walk(c, depth+1, cell); err != nil {
				return err
			}
		}
		return nil
	case 0x0d: // leaf
		for i := range cells {
			off := int(binary.BigEndian.Uint16(p[ptrs+2*i:]))
			if off < ptrs+2*cells || off >= r.usable {
				return fmt.Errorf("page %d: cell %d at %d", n, i, off)
			}
			payload, err := r.cellPayload(n, p[off:r.usable])
			if err != nil {
				return err
			}
			if err := cell(payload); err != nil {
				return err
			}
			// Overflow pages may have moved the window: this page again, not a new visit.
			r.visited--
			if p, err = r.page(n); err != nil {
				return err
			}
		}
		return nil
	default:
		return fmt.Errorf("page %d: type %#x is not a table b-tree page", n, typ)
	}
}

// cellPayload returns the payload of the table leaf cell c on page n: the bytes on the page
// when it fits, else the local part and its overflow pages assembled in r.payload.
func (r *File) cellPayload(n uint32, c []byte) ([]byte, error) {
	size, k := varint(c)
	if k == 0 {
		return nil, fmt.Errorf("page %d: bad payload size", n)
	}
	c = c[k:]
	if _, k = varint(c); k == 0 {
		return nil, fmt.Errorf("page %d: bad rowid", n)
	}
	c = c[k:]
	u := uint64(r.usable)
	x := u - 35 // the most a table leaf keeps on the page
	if size <= x {
		if uint64(len(c)) < size {
			return nil, fmt.Errorf("page %d: payload past the page", n)
		}
		return c[:size], nil
	}
	// Bounded by what overflow pages can hold, so a hostile size allocates nothing.
	if size > uint64(r.pages)*u {
		return nil, fmt.Errorf("page %d: payload of %d bytes in a %d-page file", n, size, r.pages)
	}
	m := (u-12)*32/255 - 23
	local := m + (size-m)%(u-4)
	if local > x {
		local = m
	}
	if uint64(len(c)) < local+4 {
		return nil, fmt.Errorf("page %d: payload past the page", n)
	}
	r.payload = append(r.payload[:0], c[:local]...)
	next := binary.BigEndian.Uint32(c[local:])
	for uint64(len(r.payload)) < size {
		op, err := r.page(next)
		if err != nil {
			return nil, fmt.Errorf("overflow of page %d: %w", n, err)
		}
		take := min(size-uint64(len(r.payload)), u-4)
		r.payload = append(r.payload, op[4:4+take]...)
		next = binary.BigEndian.Uint32(op)
	}
	return r.payload, nil
}

// decodeRecord fills row with the record p's first len(row) columns.
func decodeRecord(p []byte, row []Value) error {
	hsize, k := varint(p)
	if k == 0 || hsize < uint64(k) || hsize > uint64(len(p)) {
		return errors.New("bad record header")
	}
	h, body := p[k:hsize], p[hsize:]
	for i := range row {
		row[i] = Value{}
		if len(h) == 0 {
			continue
		}
		t, k := varint(h)
		if k == 0 {
			return errors.New("bad record header")
		}
		h = h[k:]
		var n uint64
		switch {
		case t <= 4:
			n = t
		case t == 5:
			n = 6
		case t == 6 || t == 7:
			n = 8
		case t == 8 || t == 9:
		case t >= 12:
			n = (t - 12) / 2
		default:
			return fmt.Errorf("bad serial type %d", t)
		}
		if n > uint64(len(body)) {
			return errors.New("record value past its payload")
		}
		row[i], body = Value{Type: t, Bytes: body[:n]}, body[n:]
	}
	return nil
}

// varint decodes SQLite's big-endian varint (1-9 bytes); k is 0 when b ends first.
func varint(b []byte) (v uint64, k int) {
	for i := range 8 {
		if i >= len(b) {
			return 0, 0
		}
		v = v<<7 | uint64(b[i]&0x7f)
		if b[i] < 0x80 {
			return v, i + 1
		}
	}
	if len(b) < 9 {
		return 0, 0
	}
	return v<<8 | uint64(b[8]), 9
}

// Index returns the root page of the index named name (ASCII case ignored), from
// sqlite_schema; a table's PRIMARY KEY index is sqlite_autoindex_<table>_1.
func (r *File) Index(name string) (uint32, error) {
	root, _, err := r.schemaEntry("index", name)
	return root, err
}

// Lookups: Seek and Row find single entries for a caller that asks for a few rows of a
// large file (an incremental commit checks the rows of the files it wrote, about 1% of
// them). They read single pages, not the read-ahead window the walk uses, and keep the
// interior pages they read (a few hundred at a million rows) for the next lookup.

// maxInterior bounds the interior pages kept between lookups (4 MB of 4 KB pages).
const maxInterior = 1024

// lookupPage returns page n for a lookup: from the interior pages kept, or read alone
// (into r.leaf, valid until the next call, unless it is an interior page, which is kept).
func (r *File) lookupPage(n uint32) ([]byte, error) {
	if n == 0 || n > r.pages {
		return nil, fmt.Errorf("page %d out of range (1-%d)", n, r.pages)
	}
	if p, ok := r.interior[n]; ok {
		return p, nil
	}
	if r.leaf == nil {
		r.leaf = make([]byte, r.pageSize)
	}
	if _, err := r.f.ReadAt(r.leaf, int64(n-1)*r.pageSize); err != nil && err != io.EOF {
		return nil, err
	}
	hdr := 0
	if n == 1 {
		hdr = 100
	}
	if t := r.leaf[hdr]; (t == 0x02 || t == 0x05) && len(r.interior) < maxInterior {
		if r.interior == nil {
			r.interior = map[uint32][]byte{}
		}
		p := append([]byte(nil), r.leaf...)
		r.interior[n] = p
		return p, nil
	}
	return r.leaf, nil
}

// btreePage is one b-tree page's header facts for a lookup.
type btreePage struct {
	p     []byte
	typ   byte
	cells int
	ptrs  int // offset of the cell pointer array
	right uint32
}

func (r *File) lookupBtree(n uint32, interiorType, leafType byte) (btreePage, error) {
	p, err := r.lookupPage(n)
	if err != nil {
		return btreePage{}, err
	}
	hdr := 0
	if n == 1 {
		hdr = 100
	}
	b := btreePage{p: p, typ: p[hdr], cells: int(binary.BigEndian.Uint16(p[hdr+3 : hdr+5])), ptrs: hdr + 8}
	switch b.typ {
	case interiorType:
		b.ptrs = hdr + 12
		b.right = binary.BigEndian.Uint32(p[hdr+8:])
	case leafType:
	default:
		return btreePage{}, fmt.Errorf("page %d: type %#x is not the b-tree page looked for", n, b.typ)
	}
	if b.ptrs+2*b.cells > r.usable {
		return btreePage{}, fmt.Errorf("page %d: %d cells do not fit", n, b.cells)
	}
	return b, nil
}

// cell returns cell i of b (from its start to the end of the usable page).
func (b btreePage) cell(r *File, n uint32, i int) ([]byte, error) {
	off := int(binary.BigEndian.Uint16(b.p[b.ptrs+2*i:]))
	if off < b.ptrs+2*b.cells || off+4 > r.usable {
		return nil, fmt.Errorf("page %d: cell %d at %d", n, i, off)
	}
	return b.p[off:r.usable], nil
}

// SeekText finds the entry of the index b-tree rooted at root whose first column is the
// text key (BINARY collation: byte order, as a UTF-8 database compares) and returns the
// rowid it holds (the record's last column, as an index on a rowid table keeps it). ok is
// false when the index has no such entry. An index entry longer than fits on its page (a
// key of over about 1,000 bytes) is ErrUnsupported: the caller asks SQLite.
func (r *File) SeekText(root uint32, key []byte) (rowid int64, ok bool, err error) {
	// The most an index cell keeps on its page (sqlite.org/fileformat2.html, "Cell Payload
	// Overflow Pages"): anything longer continues on overflow pages, which lookups do not
	// follow.
	maxLocal := uint64((r.usable-12)*64/255 - 23)
	rec := make([]Value, 2)
	n := root
	for depth := 0; ; depth++ {
		if depth > 20 {
			return 0, false, errors.New("b-tree deeper than 20 levels")
		}
		b, err := r.lookupBtree(n, 0x02, 0x0a)
		if err != nil {
			return 0, false, err
		}
		// entry decodes cell i: its key's order against key, and its rowid.
		entry := func(i int) (c int, id int64, err error) {
			cell, err := b.cell(r, n, i)
			if err != nil {
				return 0, 0, err
			}
			if b.typ == 0x02 {
				cell = cell[4:] // the left child
			}
			size, k := varint(cell)
			if k == 0 || size > uint64(len(cell)-k) {
				return 0, 0, fmt.Errorf("page %d: cell %d: bad payload size", n, i)
			}
			if size > maxLocal {
				return 0, 0, fmt.Errorf("%w: page %d: an index entry on overflow pages", ErrUnsupported, n)
			}
			payload := cell[k : k+int(size)]
			hsize, _ := varint(payload)
			if err := decodeRecord(payload, rec); err != nil {
				return 0, 0, fmt.Errorf("page %d: cell %d: %w", n, i, err)
			}
			switch v := rec[0]; {
			case v.Type < 12: // NULL and numbers sort before any text
				c = -1
			case v.Type%2 == 0: // a blob sorts after any text
				c = 1
			default:
				c = bytes.Compare(v.Bytes, key)
			}
			if c != 0 {
				return c, 0, nil
			}
			// The rowid is the record's last column: decode the header's last type.
			last := lastColumn(payload, hsize)
			id, ok := last.Int()
			if !ok {
				return 0, 0, fmt.Errorf("page %d: cell %d: an index entry without a rowid", n, i)
			}
			return 0, id, nil
		}
		lo, hi := 0, b.cells
		for lo < hi {
			m := int(uint(lo+hi) >> 1)
			c, id, err := entry(m)
			if err != nil {
				return 0, false, err
			}
			if c == 0 {
				return id, true, nil
			}
			if c < 0 {
				lo = m + 1
			} else {
				hi = m
			}
		}
		if b.typ == 0x0a {
			return 0, false, nil
		}
		if lo == b.cells {
			n = b.right
			continue
		}
		cell, err := b.cell(r, n, lo)
		if err != nil {
			return 0, false, err
		}
		n = binary.BigEndian.Uint32(cell)
	}
}

// lastColumn returns the last column of the record payload whose header is hsize bytes, an
// empty Value when the record is malformed (the caller's Int check then fails).
func lastColumn(payload []byte, hsize uint64) Value {
	if hsize > uint64(len(payload)) {
		return Value{}
	}
	h, k := payload[:hsize], 0
	_, k = varint(h)
	if k == 0 {
		return Value{}
	}
	h = h[k:]
	var cols int
	for rest := h; len(rest) > 0; cols++ {
		_, k := varint(rest)
		if k == 0 {
			return Value{}
		}
		rest = rest[k:]
	}
	if cols == 0 {
		return Value{}
	}
	row := make([]Value, cols)
	if decodeRecord(payload, row) != nil {
		return Value{}
	}
	return row[cols-1]
}

// Row calls fn with the first cols columns of the row rowid of the table b-tree rooted at
// root, as Rows would; ok is false when the table has no such row. fn's error is returned
// as it is.
func (r *File) Row(root uint32, rowid int64, cols int, fn func(row []Value) error) (ok bool, err error) {
	n := root
	for depth := 0; ; depth++ {
		if depth > 20 {
			return false, errors.New("b-tree deeper than 20 levels")
		}
		b, err := r.lookupBtree(n, 0x05, 0x0d)
		if err != nil {
			return false, err
		}
		// key returns cell i's rowid, and the cell.
		key := func(i int) (int64, []byte, error) {
			cell, err := b.cell(r, n, i)
			if err != nil {
				return 0, nil, err
			}
			c := cell
			if b.typ == 0x05 {
				c = c[4:]
			} else if _, k := varint(c); k == 0 {
				return 0, nil, fmt.Errorf("page %d: cell %d: bad payload size", n, i)
			} else {
				c = c[k:]
			}
			id, k := varint(c)
			if k == 0 {
				return 0, nil, fmt.Errorf("page %d: cell %d: bad rowid", n, i)
			}
			return int64(id), cell, nil
		}
		// The first cell whose rowid is rowid or more: an interior cell's child holds the
		// rowids up to its key; a leaf cell is the row.
		lo, hi := 0, b.cells
		for lo < hi {
			m := int(uint(lo+hi) >> 1)
			id, _, err := key(m)
			if err != nil {
				return false, err
			}
			if id < rowid {
				lo = m + 1
			} else {
				hi = m
			}
		}
		if b.typ == 0x0d {
			if lo == b.cells {
				return false, nil
			}
			id, cell, err := key(lo)
			if err != nil || id != rowid {
				return false, err
			}
			// Overflow pages are read through the walk's window, which the lookup pages do
			// not use: the leaf stays valid until the payload is assembled.
			r.visited = 0
			payload, err := r.cellPayload(n, cell)
			if err != nil {
				return false, err
			}
			row := make([]Value, cols)
			if err := decodeRecord(payload, row); err != nil {
				return false, fmt.Errorf("row %d: %w", rowid, err)
			}
			return true, fn(row)
		}
		if lo == b.cells {
			n = b.right
			continue
		}
		_, cell, err := key(lo)
		if err != nil {
			return false, err
		}
		n = binary.BigEndian.Uint32(cell)
	}
}
