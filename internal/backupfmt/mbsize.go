package backupfmt

import "encoding/binary"

// MBFileSize reads the Size field of a binary MBFile archive without decoding the rest of
// it: a full backup's verify needs every row's size, and decoding each archive into maps
// (DecodeMBFile) costs about ten times reading the row (issue #16). ok is false when b is not
// a binary plist of the usual NSKeyedArchiver shape (an XML archive, a UID where an integer
// belongs, a class other than MBFile, anything out of bounds): the caller then decodes it
// with DecodeMBFile, which says what is wrong. Only the objects that lead to Size are read:
// an archive damaged elsewhere (a field of the wrong type, a cycle) may get a size here where
// DecodeMBFile refuses it.
func MBFileSize(b []byte) (size int64, ok bool) {
	r, ok := newBPReader(b)
	if !ok {
		return 0, false
	}
	top, ok := r.dictGet(r.top, "$top")
	if !ok {
		return 0, false
	}
	rootUID, ok := r.dictGet(top, "root")
	if !ok {
		return 0, false
	}
	objects, ok := r.dictGet(r.top, "$objects")
	if !ok {
		return 0, false
	}
	resolve := func(obj uint64) (uint64, bool) {
		uid, ok := r.uid(obj)
		if !ok || uid == 0 {
			return 0, false
		}
		return r.arrayAt(objects, uid)
	}
	root, ok := resolve(rootUID)
	if !ok {
		return 0, false
	}
	if cls, ok := r.dictGet(root, "$class"); ok {
		c, ok := resolve(cls)
		if !ok {
			return 0, false
		}
		name, ok := r.dictGet(c, "$classname")
		if !ok || !r.asciiIs(name, "MBFile") {
			return 0, false
		}
	}
	v, found := r.dictGet(root, "Size")
	if !found {
		return 0, false // rare (DecodeMBFile reads it as 0): let it decide
	}
	return r.integer(v)
}

// bpReader follows references in a binary plist ("bplist00"), checking every bound.
type bpReader struct {
	b                []byte
	offSize, refSize int
	n, table, top    uint64
}

func newBPReader(b []byte) (*bpReader, bool) {
	if len(b) < 8+32 || string(b[:8]) != "bplist00" {
		return nil, false
	}
	t := b[len(b)-32:]
	r := &bpReader{b: b, offSize: int(t[6]), refSize: int(t[7]),
		n: binary.BigEndian.Uint64(t[8:16]), top: binary.BigEndian.Uint64(t[16:24]), table: binary.BigEndian.Uint64(t[24:32])}
	end := uint64(len(b) - 32)
	if r.offSize < 1 || r.offSize > 8 || r.refSize < 1 || r.refSize > 8 || r.n > end || r.top >= r.n ||
		r.table > end || r.n*uint64(r.offSize) > end-r.table {
		return nil, false
	}
	return r, true
}

func (r *bpReader) uintAt(p uint64, size int) (uint64, bool) {
	if p > uint64(len(r.b)) || uint64(size) > uint64(len(r.b))-p {
		return 0, false
	}
	var v uint64
	for _, c := range r.b[p : p+uint64(size)] {
		v = v<<8 | uint64(c)
	}
	return v, true
}

// object returns the position of object i's marker byte.
func (r *bpReader) object(i uint64) (uint64, bool) {
	if i >= r.n {
		return 0, false
	}
	p, ok := r.uintAt(r.table+i*uint64(r.offSize), r.offSize)
	if !ok || p >= r.table {
		return 0, false
	}
	return p, true
}

// container returns the count and content position of object i if its marker's high
// nibble is kind (0xA array, 0xD dict, 0x5 ASCII string).
func (r *bpReader) container(i uint64, kind byte) (count, pos uint64, ok bool) {
	p, ok := r.object(i)
	if !ok || r.b[p]>>4 != kind {
		return 0, 0, false
	}
	count, pos = uint64(r.b[p]&0xF), p+1
	if count == 0xF {
		if pos >= uint64(len(r.b)) || r.b[pos]>>4 != 0x1 || r.b[pos]&0xF > 3 {
			return 0, 0, false
		}
		size := 1 << (r.b[pos] & 0xF)
		if count, ok = r.uintAt(pos+1, size); !ok {
			return 0, 0, false
		}
		pos += 1 + uint64(size)
	}
	if count > uint64(len(r.b)) {
		return 0, 0, false
	}
	return count, pos, true
}

func (r *bpReader) ref(pos, k uint64) (uint64, bool) {
	return r.uintAt(pos+k*uint64(r.refSize), r.refSize)
}

// dictGet returns the object that dict d maps the ASCII key to.
func (r *bpReader) dictGet(d uint64, key string) (uint64, bool) {
	count, pos, ok := r.container(d, 0xD)
	if !ok {
		return 0, false
	}
	// The last of duplicate keys wins, as when the dict is decoded into a map.
	found, at := false, uint64(0)
	for k := uint64(0); k < count; k++ {
		kr, ok := r.ref(pos, k)
		if !ok {
			return 0, false
		}
		if r.asciiIs(kr, key) {
			found, at = true, k
		} else if p, ok := r.object(kr); !ok || r.b[p]>>4 == 0x6 {
			return 0, false // a UTF-16 key might spell the same name
		}
	}
	if !found {
		return 0, false
	}
	return r.ref(pos, count+at)
}

func (r *bpReader) asciiIs(i uint64, s string) bool {
	n, pos, ok := r.container(i, 0x5)
	if !ok || n != uint64(len(s)) || pos+n > uint64(len(r.b)) {
		return false
	}
	return string(r.b[pos:pos+n]) == s
}

func (r *bpReader) arrayAt(a, k uint64) (uint64, bool) {
	count, pos, ok := r.container(a, 0xA)
	if !ok || k >= count {
		return 0, false
	}
	return r.ref(pos, k)
}

func (r *bpReader) uid(i uint64) (uint64, bool) {
	p, ok := r.object(i)
	if !ok || r.b[p]>>4 != 0x8 {
		return 0, false
	}
	return r.uintAt(p+1, int(r.b[p]&0xF)+1)
}

// integer reads an integer object of 1, 2, 4 (unsigned) or 8 (signed) bytes.
func (r *bpReader) integer(i uint64) (int64, bool) {
	p, ok := r.object(i)
	if !ok || r.b[p]>>4 != 0x1 || r.b[p]&0xF > 3 {
		return 0, false
	}
	v, ok := r.uintAt(p+1, 1<<(r.b[p]&0xF))
	return int64(v), ok
}
