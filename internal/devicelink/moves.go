package devicelink

import (
	"cmp"
	"slices"

	"snapback/internal/bplist"
)

// MovePair is one move of a MoveItems message: device path Src to device path Dst.
type MovePair struct{ Src, Dst string }

// Moves is argument 1 of a MoveItems message as ReadMessage returns it when the message has
// the usual shape, in the order the device sent the pairs (see decodeMoves).
type Moves []MovePair

// MovesOf returns the moves of a MoveItems message's argument 1, sorted by source, one per
// source: the last the device sent for it, as when the dict is decoded into a map. Sorting
// gives every run the same order whatever the decoder; the device depends on none. A value
// that is not a string is an empty destination, which the caller refuses as a path. A Moves
// is sorted in place.
func MovesOf(arg any) []MovePair {
	var ps []MovePair
	switch a := arg.(type) {
	case Moves:
		ps = a
		slices.SortStableFunc(ps, func(x, y MovePair) int { return cmp.Compare(x.Src, y.Src) })
		// Keep the last of each run of equal sources.
		n := 0
		for i, p := range ps {
			if i+1 < len(ps) && ps[i+1].Src == p.Src {
				continue
			}
			ps[n] = p
			n++
		}
		ps = ps[:n]
	case map[string]any:
		ps = make([]MovePair, 0, len(a))
		for src, v := range a {
			dst, _ := v.(string)
			ps = append(ps, MovePair{src, dst})
		}
		slices.SortFunc(ps, func(x, y MovePair) int { return cmp.Compare(x.Src, y.Src) })
	}
	return ps
}

// maxInPlaceMoves bounds the pairs decodeMoves reads. Every pair may refer to the same two
// strings, so a hostile 32 MB frame could announce 16 million pairs (512 MB of them); the map
// the full decoder makes holds each source once. A device sends about a thousand a message.
const maxInPlaceMoves = 1 << 16

// decodeMoves decodes a MoveItems message of the usual shape in place: a binary plist array
// of the message name, a dict of string pairs, and optionally an empty dict and a real (the
// progress). It returns false for anything else, which the full decoder then reads as any
// other message.
//
// Why: a full backup's moves are the largest messages of the session (the simulator sends a
// thousand pairs each, a real device a similar batch; every file of the backup is moved once).
// Decoding them into a map[string]any cost 3% of the client's user CPU, and with the copies
// of the frame 46% of all the bytes it allocated (188 of 406 MB in a 200,000-file full
// backup, pprof), which made the garbage collector run 200 times. Here the frame is copied
// into one string, of which every path is a substring, and the pairs go into one slice.
func decodeMoves(b []byte) (Message, bool) {
	r, ok := bplist.New(b)
	if !ok {
		return nil, false
	}
	n, pos, ok := r.Container(r.Top(), bplist.KindArray)
	if !ok || n < 2 || n > 4 {
		return nil, false
	}
	nameRef, ok1 := r.Ref(pos, 0)
	dictRef, ok2 := r.Ref(pos, 1)
	if !ok1 || !ok2 {
		return nil, false
	}
	var name string
	switch {
	case r.ASCIIIs(nameRef, MoveItems):
		name = MoveItems
	case r.ASCIIIs(nameRef, MoveFiles):
		name = MoveFiles
	default:
		return nil, false
	}
	msg := Message{name, nil}
	for k := uint64(2); k < n; k++ {
		ref, ok := r.Ref(pos, k)
		if !ok {
			return nil, false
		}
		if c, _, ok := r.Container(ref, bplist.KindDict); ok && c == 0 {
			msg = append(msg, map[string]any{})
		} else if v, ok := r.Real(ref); ok {
			msg = append(msg, v)
		} else {
			return nil, false
		}
	}
	count, dpos, ok := r.Container(dictRef, bplist.KindDict)
	if !ok || count > maxInPlaceMoves {
		return nil, false
	}
	text := string(b) // every path is a substring of this one copy
	str := func(ref uint64) (string, bool) {
		start, end, ok := r.ASCII(ref)
		if !ok {
			return "", false // a UTF-16 string, or not a string: the full decoder's case
		}
		return text[start:end], true
	}
	moves := make(Moves, 0, count)
	for k := uint64(0); k < count; k++ {
		kr, ok1 := r.Ref(dpos, k)
		vr, ok2 := r.Ref(dpos, count+k)
		if !ok1 || !ok2 {
			return nil, false
		}
		src, ok1 := str(kr)
		dst, ok2 := str(vr)
		if !ok1 || !ok2 {
			return nil, false
		}
		moves = append(moves, MovePair{src, dst})
	}
	msg[1] = moves
	return msg, true
}
