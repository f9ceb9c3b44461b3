// Package bplist reads single values out of a binary property list ("bplist00") in place,
// checking every bound, without decoding the whole document into Go maps.
//
// howett.net/plist decodes a document whole: it copies the input (io.ReadAll), then builds a
// map or slice of interfaces for every container. That is right for a message read once, but
// two hot paths read thousands of small, regular documents (issue #16): a full backup's verify
// reads the Size of every row's MBFile archive in Manifest.db (backupfmt.MBFileSize), and the
// device's MoveItems messages carry up to a thousand path pairs each, a whole backup's worth
// of them in a full backup (devicelink.decodeMoves). Both read what they need here and fall
// back to the full decoder for anything of another shape, which then says what is wrong.
//
// Objects are named by their index in the offset table (uint64), as in the format itself.
package bplist

import (
	"encoding/binary"
	"math"
)

// Marker kinds: the high nibble of an object's marker byte.
const (
	KindInt   = 0x1
	KindReal  = 0x2
	KindASCII = 0x5
	KindUTF16 = 0x6
	KindUID   = 0x8
	KindArray = 0xA
	KindDict  = 0xD
)

// Reader follows references in one document. Every position it returns lies before the
// offset table, as howett.net/plist also requires.
type Reader struct {
	b                []byte
	offSize, refSize int
	n, table, top    uint64
}

// New checks b's header and trailer; false when b is not a binary plist with a sane trailer.
func New(b []byte) (Reader, bool) {
	if len(b) < 8+32 || string(b[:8]) != "bplist00" {
		return Reader{}, false
	}
	t := b[len(b)-32:]
	r := Reader{b: b, offSize: int(t[6]), refSize: int(t[7]),
		n: binary.BigEndian.Uint64(t[8:16]), top: binary.BigEndian.Uint64(t[16:24]), table: binary.BigEndian.Uint64(t[24:32])}
	end := uint64(len(b) - 32)
	if r.offSize < 1 || r.offSize > 8 || r.refSize < 1 || r.refSize > 8 || r.n > end || r.top >= r.n ||
		r.table > end || r.n*uint64(r.offSize) > end-r.table {
		return Reader{}, false
	}
	return r, true
}

// Top is the document's top object.
func (r *Reader) Top() uint64 { return r.top }

func (r *Reader) uintAt(p uint64, size int) (uint64, bool) {
	if p > r.table || uint64(size) > r.table-p {
		return 0, false
	}
	var v uint64
	for _, c := range r.b[p : p+uint64(size)] {
		v = v<<8 | uint64(c)
	}
	return v, true
}

// object returns the position of object i's marker byte.
func (r *Reader) object(i uint64) (uint64, bool) {
	if i >= r.n {
		return 0, false
	}
	// The offset table lies after r.table, so uintAt's bound does not fit it; New checked
	// that all n entries lie within the document.
	at := r.table + i*uint64(r.offSize)
	var p uint64
	for _, c := range r.b[at : at+uint64(r.offSize)] {
		p = p<<8 | uint64(c)
	}
	if p >= r.table {
		return 0, false
	}
	return p, true
}

// Kind is the high nibble of object i's marker.
func (r *Reader) Kind(i uint64) (byte, bool) {
	p, ok := r.object(i)
	if !ok {
		return 0, false
	}
	return r.b[p] >> 4, true
}

// Container returns the count and content position of object i if its marker's high
// nibble is kind (KindArray, KindDict, KindASCII, KindUTF16). For a string, count is in
// characters (UTF-16 code units: two bytes each); the content is checked to lie in bounds.
func (r *Reader) Container(i uint64, kind byte) (count, pos uint64, ok bool) {
	p, ok := r.object(i)
	if !ok || r.b[p]>>4 != kind {
		return 0, 0, false
	}
	count, pos = uint64(r.b[p]&0xF), p+1
	if count == 0xF {
		if pos >= r.table || r.b[pos]>>4 != KindInt || r.b[pos]&0xF > 3 {
			return 0, 0, false
		}
		size := 1 << (r.b[pos] & 0xF)
		if count, ok = r.uintAt(pos+1, size); !ok {
			return 0, 0, false
		}
		pos += 1 + uint64(size)
	}
	width := uint64(1) // ASCII: a byte a character
	switch kind {
	case KindArray:
		width = uint64(r.refSize)
	case KindDict:
		width = 2 * uint64(r.refSize) // keys, then values
	case KindUTF16:
		width = 2
	}
	if count > r.table || pos > r.table || count*width > r.table-pos {
		return 0, 0, false
	}
	return count, pos, true
}

// Ref is the k-th reference of a container whose content starts at pos.
func (r *Reader) Ref(pos, k uint64) (uint64, bool) {
	return r.uintAt(pos+k*uint64(r.refSize), r.refSize)
}

// ASCII returns where the content of ASCII string i lies in the document: b[start:end].
func (r *Reader) ASCII(i uint64) (start, end uint64, ok bool) {
	n, pos, ok := r.Container(i, KindASCII)
	if !ok {
		return 0, 0, false
	}
	return pos, pos + n, true
}

// ASCIIIs reports whether object i is the ASCII string s.
func (r *Reader) ASCIIIs(i uint64, s string) bool {
	start, end, ok := r.ASCII(i)
	return ok && end-start == uint64(len(s)) && string(r.b[start:end]) == s
}

// DictGet returns the object that dict d maps the ASCII key to. The last of duplicate keys
// wins, as when the dict is decoded into a map; a UTF-16 key, which might spell the same
// name, makes it fail. Each key costs one offset-table lookup: the verify of a full backup
// reads five dicts of every row's archive this way (issue #16).
func (r *Reader) DictGet(d uint64, key string) (uint64, bool) {
	count, pos, ok := r.Container(d, KindDict)
	if !ok {
		return 0, false
	}
	found, at := false, uint64(0)
	for k := uint64(0); k < count; k++ {
		kr, ok := r.Ref(pos, k)
		if !ok {
			return 0, false
		}
		p, ok := r.object(kr)
		if !ok {
			return 0, false
		}
		switch r.b[p] >> 4 {
		case KindUTF16:
			return 0, false
		case KindASCII:
			// A short key's length is in its marker; a longer one takes Container's way.
			if n := uint64(r.b[p] & 0xF); n != 0xF {
				if n == uint64(len(key)) && p+1+n <= r.table && string(r.b[p+1:p+1+n]) == key {
					found, at = true, k
				}
			} else if r.ASCIIIs(kr, key) {
				found, at = true, k
			}
		}
	}
	if !found {
		return 0, false
	}
	return r.Ref(pos, count+at)
}

// ArrayAt is element k of array a.
func (r *Reader) ArrayAt(a, k uint64) (uint64, bool) {
	count, pos, ok := r.Container(a, KindArray)
	if !ok || k >= count {
		return 0, false
	}
	return r.Ref(pos, k)
}

// UID reads a UID object (NSKeyedArchiver's references).
func (r *Reader) UID(i uint64) (uint64, bool) {
	p, ok := r.object(i)
	if !ok || r.b[p]>>4 != KindUID {
		return 0, false
	}
	return r.uintAt(p+1, int(r.b[p]&0xF)+1)
}

// Integer reads an integer object of 1, 2, 4 (unsigned) or 8 (signed) bytes.
func (r *Reader) Integer(i uint64) (int64, bool) {
	p, ok := r.object(i)
	if !ok || r.b[p]>>4 != KindInt || r.b[p]&0xF > 3 {
		return 0, false
	}
	v, ok := r.uintAt(p+1, 1<<(r.b[p]&0xF))
	return int64(v), ok
}

// Real reads an 8-byte real, the width devices and howett.net/plist write.
func (r *Reader) Real(i uint64) (float64, bool) {
	p, ok := r.object(i)
	if !ok || r.b[p] != KindReal<<4|3 {
		return 0, false
	}
	v, ok := r.uintAt(p+1, 8)
	return math.Float64frombits(v), ok
}
