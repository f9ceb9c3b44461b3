package devicelink

import (
	"encoding/binary"
	"math"
	"reflect"
	"slices"
	"testing"

	"snapback/internal/plistio"
)

// bpDoc builds a binary plist by hand, for documents howett.net/plist cannot write (a dict
// with a key twice). Objects are added in order; refs are their indexes.
type bpDoc struct{ objs [][]byte }

func (d *bpDoc) add(o []byte) int { d.objs = append(d.objs, o); return len(d.objs) - 1 }

func (d *bpDoc) ascii(s string) int {
	if len(s) >= 15 {
		return d.add(append([]byte{0x5F, 0x10, byte(len(s))}, s...))
	}
	return d.add(append([]byte{0x50 | byte(len(s))}, s...))
}

func (d *bpDoc) real(f float64) int {
	return d.add(binary.BigEndian.AppendUint64([]byte{0x23}, math.Float64bits(f)))
}

func (d *bpDoc) container(marker byte, refs ...int) int {
	n := len(refs)
	if marker == 0xD {
		n /= 2 // refs holds keys then values: the count is of pairs
	}
	o := binary.BigEndian.AppendUint32([]byte{marker<<4 | 0xF, 0x12}, uint32(n))
	for _, r := range refs {
		o = binary.BigEndian.AppendUint16(o, uint16(r))
	}
	return d.add(o)
}

// bytes lays the document out with 2-byte refs and 4-byte offsets, top object top.
func (d *bpDoc) bytes(top int) []byte {
	b := []byte("bplist00")
	var offs []uint32
	for _, o := range d.objs {
		offs = append(offs, uint32(len(b)))
		b = append(b, o...)
	}
	table := len(b)
	for _, o := range offs {
		b = binary.BigEndian.AppendUint32(b, o)
	}
	t := make([]byte, 32)
	t[6], t[7] = 4, 2
	binary.BigEndian.PutUint64(t[8:], uint64(len(d.objs)))
	binary.BigEndian.PutUint64(t[16:], uint64(top))
	binary.BigEndian.PutUint64(t[24:], uint64(table))
	return append(b, t...)
}

// sameAsFullDecoder checks that b reads, through ReadMessage, as the full decoder reads it,
// and reports whether the in-place decoder took it.
func sameAsFullDecoder(t *testing.T, b []byte) (fast bool) {
	t.Helper()
	want, err := DecodeMessage(b)
	if err != nil {
		t.Fatalf("full decoder: %v", err)
	}
	frame := binary.BigEndian.AppendUint32(nil, uint32(len(b)))
	got, err := readConn(append(frame, b...)).ReadMessage()
	if err != nil {
		t.Fatalf("ReadMessage: %v", err)
	}
	if got.Name() != want.Name() || len(got) != len(want) {
		t.Fatalf("ReadMessage = %v, full decoder %v", got, want)
	}
	if g, w := MovesOf(got.Arg(1)), MovesOf(want.Arg(1)); !slices.Equal(g, w) {
		t.Fatalf("moves = %v, full decoder %v", g, w)
	}
	if !sameArgs(got[2:], want[2:]) {
		t.Fatalf("other arguments = %#v, full decoder %#v", got[2:], want[2:])
	}
	_, fast = got.Arg(1).(Moves)
	return fast
}

// A full backup's MoveItems messages are read in place, and every message reads exactly as
// the full decoder reads it: the same pairs, in source order, the last of a repeated source
// winning, the same progress. Shapes the in-place reader does not know go to the full
// decoder.
func TestMovesReadAsTheFullDecoderReadsThem(t *testing.T) {
	udid := "00008110-00005A0000000000"
	pairs := map[string]any{}
	for i := range 300 {
		id := []byte("0123456789abcdef0123456789abcdef01234567")
		id[i%40] = "0123456789abcdef"[i%16]
		id[(i/40)%40] = "fedcba9876543210"[i%16]
		pairs[udid+"/Snapshot/"+string(id[:2])+"/"+string(id)] = udid + "/" + string(id[:2]) + "/" + string(id)
	}
	for _, tc := range []struct {
		name string
		msg  []any
		fast bool
	}{
		{"as devices send it", []any{MoveItems, pairs, map[string]any{}, 100.0}, true},
		{"older name", []any{MoveFiles, pairs, map[string]any{}, 42.5}, true},
		{"no progress", []any{MoveItems, pairs}, true},
		{"empty", []any{MoveItems, map[string]any{}, map[string]any{}, 0.0}, true},
		{"non-ASCII path", []any{MoveItems, map[string]any{udid + "/Snapshot/é": udid + "/é"}, map[string]any{}, 1.0}, false},
		{"destination not a string", []any{MoveItems, map[string]any{udid + "/a": uint64(3)}, map[string]any{}, 1.0}, false},
		{"progress as an integer", []any{MoveItems, pairs, map[string]any{}, uint64(100)}, false},
		{"options not empty", []any{MoveItems, pairs, map[string]any{"x": "y"}, 100.0}, false},
		{"another message", []any{RemoveItems, []any{udid + "/a"}, map[string]any{}, 100.0}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := plistio.Marshal(tc.msg, plistio.Binary)
			if err != nil {
				t.Fatal(err)
			}
			if fast := sameAsFullDecoder(t, b); fast != tc.fast {
				t.Errorf("read in place: %v, want %v", fast, tc.fast)
			}
		})
	}

	t.Run("repeated source", func(t *testing.T) {
		var d bpDoc
		name, a, b, x, y := d.ascii(MoveItems), d.ascii(udid+"/a"), d.ascii(udid+"/b"), d.ascii(udid+"/x"), d.ascii(udid+"/y")
		// b→x, a→x, b→y: b appears twice, and the dict says y last.
		dict := d.container(0xD, b, a, b, x, x, y)
		top := d.container(0xA, name, dict, d.container(0xD), d.real(100))
		doc := d.bytes(top)
		if !sameAsFullDecoder(t, doc) {
			t.Fatal("not read in place")
		}
		m, err := decodeMessageFast(doc)
		if err != nil {
			t.Fatal(err)
		}
		want := []MovePair{{udid + "/a", udid + "/x"}, {udid + "/b", udid + "/y"}}
		if got := MovesOf(m.Arg(1)); !slices.Equal(got, want) {
			t.Fatalf("moves = %v, want %v", got, want)
		}
	})
}

// A dict announcing more pairs than a device sends, all naming the same two strings, is left
// to the full decoder (one entry in its map) instead of growing a slice of a pair each.
func TestManyMovesOfOnePairGoToTheFullDecoder(t *testing.T) {
	var d bpDoc
	name, a, x := d.ascii(MoveItems), d.ascii("u/a"), d.ascii("u/x")
	refs := make([]int, 2*(maxInPlaceMoves+1))
	for i := range refs {
		refs[i] = a
		if i >= len(refs)/2 {
			refs[i] = x
		}
	}
	doc := d.bytes(d.container(0xA, name, d.container(0xD, refs...)))
	if _, ok := decodeMoves(doc); ok {
		t.Fatal("read in place")
	}
	if sameAsFullDecoder(t, doc) {
		t.Fatal("ReadMessage read it in place")
	}
	m, err := decodeMessageFast(doc)
	if err != nil {
		t.Fatal(err)
	}
	if got := MovesOf(m.Arg(1)); !slices.Equal(got, []MovePair{{"u/a", "u/x"}}) {
		t.Fatalf("moves = %v, want the one pair", got)
	}
}

// decodeMessageFast is what ReadMessage decodes b to.
func decodeMessageFast(b []byte) (Message, error) {
	frame := binary.BigEndian.AppendUint32(nil, uint32(len(b)))
	return readConn(append(frame, b...)).ReadMessage()
}

// Reading a control message reuses one buffer, and a message read before is not changed by
// the next: decoded strings never point into the buffer.
func TestReadMessageKeepsNothingOfTheBuffer(t *testing.T) {
	udid := "00008110-00005A0000000000"
	var stream []byte
	for i := range 3 {
		b, err := plistio.Marshal([]any{MoveItems, map[string]any{udid + "/Snapshot/0" + string(rune('a'+i)): udid + "/d" + string(rune('a'+i))}, map[string]any{}, 100.0}, plistio.Binary)
		if err != nil {
			t.Fatal(err)
		}
		stream = binary.BigEndian.AppendUint32(stream, uint32(len(b)))
		stream = append(stream, b...)
	}
	c := readConn(stream)
	var got []MovePair
	for range 3 {
		m, err := c.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, MovesOf(m.Arg(1))...)
	}
	want := []MovePair{{udid + "/Snapshot/0a", udid + "/da"}, {udid + "/Snapshot/0b", udid + "/db"}, {udid + "/Snapshot/0c", udid + "/dc"}}
	if !slices.Equal(got, want) {
		t.Fatalf("moves = %v, want %v", got, want)
	}
}

// FuzzDecodeMoves feeds arbitrary payloads to the in-place MoveItems reader (they come from
// the device). It must never panic, and whatever both decoders accept must read the same.
func FuzzDecodeMoves(f *testing.F) {
	for _, msg := range [][]any{
		{MoveItems, map[string]any{"u/Snapshot/ab/ab01": "u/ab/ab01", "u/x": "u/y"}, map[string]any{}, 100.0},
		{MoveFiles, map[string]any{}},
		{MoveItems, map[string]any{"u/é": "u/e"}, map[string]any{}, 1.0},
	} {
		f.Add(encodeMessage(f, plistio.Binary, msg...))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, ok := decodeMoves(b)
		if !ok {
			return
		}
		if n := fast.Name(); n != MoveItems && n != MoveFiles {
			t.Fatalf("read %q as a move", n)
		}
		full, err := DecodeMessage(b)
		if err != nil {
			return // the full decoder checks more of the document; the fast one checked every bound it used
		}
		if g, w := MovesOf(fast.Arg(1)), MovesOf(full.Arg(1)); !slices.Equal(g, w) {
			t.Fatalf("moves = %v, full decoder %v", g, w)
		}
		if !sameArgs(fast[2:], full[2:]) {
			t.Fatalf("other arguments = %#v, full decoder %#v", fast[2:], full[2:])
		}
	})
}

// sameArgs compares decoded arguments, a NaN progress equal to itself.
func sameArgs(a, b []any) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, ok1 := a[i].(float64)
		y, ok2 := b[i].(float64)
		if ok1 && ok2 {
			if math.Float64bits(x) != math.Float64bits(y) {
				return false
			}
		} else if !reflect.DeepEqual(a[i], b[i]) {
			return false
		}
	}
	return true
}
