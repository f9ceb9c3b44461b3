package backupfmt

import (
	"encoding/binary"
	"math"
	"sync"
	"unicode/utf16"

	"howett.net/plist"
)

// A small binary-plist writer for the fixed shapes this package emits (MBFile archives: a few
// dozen ints, strings, data blobs and UIDs). Manifest.db holds one archive per file, so a
// million-file backup encodes a million of them; the reflection-based general encoder spent
// most of a simulated backup's CPU here. Decoding still goes through howett.net/plist.

// bpDict is a dictionary with a fixed key order (the order only affects the bytes, not
// the meaning).
type bpDict []bpKV

type bpKV struct {
	key string
	val any
}

type bpNode struct {
	val      any   // int64, uint64, string, []byte, plist.UID; nil for containers
	dict     bool  // container kind when val is nil: dict, else array
	children []int // array: elements; dict: keys then values
}

type bpWriter struct{ nodes []bpNode }

// writerPool recycles node tables: Manifest.db generation encodes one archive per file.
var writerPool = sync.Pool{New: func() any { return &bpWriter{nodes: make([]bpNode, 0, 64)} }}

func (w *bpWriter) add(v any) int {
	idx := len(w.nodes)
	switch x := v.(type) {
	case int:
		w.nodes = append(w.nodes, bpNode{val: int64(x)})
	case int64, uint64, string, []byte, plist.UID:
		w.nodes = append(w.nodes, bpNode{val: x})
	case []any:
		w.nodes = append(w.nodes, bpNode{})
		ch := make([]int, len(x))
		for i, e := range x {
			ch[i] = w.add(e)
		}
		w.nodes[idx].children = ch
	case []string:
		w.nodes = append(w.nodes, bpNode{})
		ch := make([]int, len(x))
		for i, e := range x {
			ch[i] = w.add(e)
		}
		w.nodes[idx].children = ch
	case bpDict:
		w.nodes = append(w.nodes, bpNode{dict: true})
		ch := make([]int, 2*len(x))
		for i, kv := range x {
			ch[i] = w.add(kv.key)
		}
		for i, kv := range x {
			ch[len(x)+i] = w.add(kv.val)
		}
		w.nodes[idx].children = ch
	default:
		panic("bplist writer: unsupported type") // programming error: callers pass fixed shapes
	}
	return idx
}

// encodeBPlist serialises root (node 0) as "bplist00".
func encodeBPlist(root any) []byte {
	w := writerPool.Get().(*bpWriter)
	defer func() {
		clear(w.nodes) // drop references to the caller's data
		w.nodes = w.nodes[:0]
		writerPool.Put(w)
	}()
	w.add(root)
	refSize := 1
	if len(w.nodes) > 256 {
		refSize = 2
	}
	if len(w.nodes) > 65536 {
		refSize = 4
	}
	b := make([]byte, 0, 512)
	b = append(b, "bplist00"...)
	offsets := make([]int, len(w.nodes))
	for i, n := range w.nodes {
		offsets[i] = len(b)
		b = appendNode(b, n, refSize)
	}
	tableAt := len(b)
	offSize := 1
	for limit := 256; tableAt >= limit && offSize < 8; limit <<= 8 {
		offSize++
	}
	if offSize > 4 {
		offSize = 8
	} else if offSize == 3 {
		offSize = 4
	}
	for _, o := range offsets {
		b = appendUint(b, uint64(o), offSize)
	}
	b = append(b, 0, 0, 0, 0, 0, 0, byte(offSize), byte(refSize))
	b = binary.BigEndian.AppendUint64(b, uint64(len(w.nodes)))
	b = binary.BigEndian.AppendUint64(b, 0)
	b = binary.BigEndian.AppendUint64(b, uint64(tableAt))
	return b
}

func appendUint(b []byte, v uint64, size int) []byte {
	for i := size - 1; i >= 0; i-- {
		b = append(b, byte(v>>(8*i)))
	}
	return b
}

func appendInt(b []byte, v int64) []byte {
	switch {
	case v < 0:
		return binary.BigEndian.AppendUint64(append(b, 0x13), uint64(v))
	case v <= math.MaxUint8:
		return append(b, 0x10, byte(v))
	case v <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0x11), uint16(v))
	case v <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, 0x12), uint32(v))
	}
	return binary.BigEndian.AppendUint64(append(b, 0x13), uint64(v))
}

// appendMarker writes a type marker with a count: inline below 15, else a following int.
func appendMarker(b []byte, typ byte, n int) []byte {
	if n < 15 {
		return append(b, typ<<4|byte(n))
	}
	return appendInt(append(b, typ<<4|0x0f), int64(n))
}

func appendNode(b []byte, n bpNode, refSize int) []byte {
	switch v := n.val.(type) {
	case int64:
		return appendInt(b, v)
	case uint64:
		if v <= math.MaxInt64 {
			return appendInt(b, int64(v))
		}
		// Above int64: the 16-byte form, which readers take as unsigned.
		return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(append(b, 0x14), 0), v)
	case string:
		ascii := true
		for i := 0; i < len(v); i++ {
			if v[i] >= 0x80 {
				ascii = false
				break
			}
		}
		if ascii {
			return append(appendMarker(b, 0x5, len(v)), v...)
		}
		u := utf16.Encode([]rune(v))
		b = appendMarker(b, 0x6, len(u))
		for _, c := range u {
			b = binary.BigEndian.AppendUint16(b, c)
		}
		return b
	case []byte:
		return append(appendMarker(b, 0x4, len(v)), v...)
	case plist.UID:
		switch {
		case v <= math.MaxUint8:
			return append(b, 0x80, byte(v))
		case v <= math.MaxUint16:
			return binary.BigEndian.AppendUint16(append(b, 0x81), uint16(v))
		}
		return binary.BigEndian.AppendUint32(append(b, 0x83), uint32(v))
	}
	typ, count := byte(0xA), len(n.children)
	if n.dict {
		typ, count = 0xD, len(n.children)/2
	}
	b = appendMarker(b, typ, count)
	for _, c := range n.children {
		b = appendUint(b, uint64(c), refSize)
	}
	return b
}
