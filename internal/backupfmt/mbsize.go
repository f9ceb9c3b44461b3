package backupfmt

import "snapback/internal/bplist"

// MBFileSize reads the Size field of a binary MBFile archive without decoding the rest of
// it: a full backup's verify needs every row's size, and decoding each archive into maps
// (DecodeMBFile) costs about ten times reading the row (issue #16). ok is false when b is not
// a binary plist of the usual NSKeyedArchiver shape (an XML archive, a UID where an integer
// belongs, a class other than MBFile, anything out of bounds): the caller then decodes it
// with DecodeMBFile, which says what is wrong. Only the objects that lead to Size are read:
// an archive damaged elsewhere (a field of the wrong type, a cycle) may get a size here where
// DecodeMBFile refuses it.
func MBFileSize(b []byte) (size int64, ok bool) {
	r, ok := bplist.New(b)
	if !ok {
		return 0, false
	}
	top, ok := r.DictGet(r.Top(), "$top")
	if !ok {
		return 0, false
	}
	rootUID, ok := r.DictGet(top, "root")
	if !ok {
		return 0, false
	}
	objects, ok := r.DictGet(r.Top(), "$objects")
	if !ok {
		return 0, false
	}
	resolve := func(obj uint64) (uint64, bool) {
		uid, ok := r.UID(obj)
		if !ok || uid == 0 {
			return 0, false
		}
		return r.ArrayAt(objects, uid)
	}
	root, ok := resolve(rootUID)
	if !ok {
		return 0, false
	}
	if cls, ok := r.DictGet(root, "$class"); ok {
		c, ok := resolve(cls)
		if !ok {
			return 0, false
		}
		name, ok := r.DictGet(c, "$classname")
		if !ok || !r.ASCIIIs(name, "MBFile") {
			return 0, false
		}
	}
	v, found := r.DictGet(root, "Size")
	if !found {
		return 0, false // rare (DecodeMBFile reads it as 0): let it decide
	}
	return r.Integer(v)
}
