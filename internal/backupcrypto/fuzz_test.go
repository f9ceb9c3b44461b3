package backupcrypto

import (
	"reflect"
	"testing"
)

// FuzzParseKeyBag feeds hostile keybags to the parser: it must never panic or allocate beyond
// its bounds, and whatever it accepts must survive Marshal and a second parse unchanged.
// Seeds live in testdata/fuzz/FuzzParseKeyBag (a real-shaped bag, the hashcat vectors'
// bags, truncations).
func FuzzParseKeyBag(f *testing.F) {
	f.Add([]byte("VERS\x00\x00\x00\x04\x00\x00\x00\x05"))
	f.Fuzz(func(t *testing.T, data []byte) {
		kb, err := ParseKeyBag(data)
		if err != nil {
			return
		}
		if len(kb.UUID) != 16 || len(kb.Classes) == 0 || len(kb.Classes) > maxClasses {
			t.Fatalf("accepted bag with UUID %x and %d classes", kb.UUID, len(kb.Classes))
		}
		if kb.Salt == nil || kb.Iter == 0 || (kb.DPSL != nil && kb.DPIC == 0) || (kb.DPSL == nil && (kb.DPIC != 0 || kb.DPWT != 0)) {
			return // Marshal writes what a derivable bag has; such bags cannot round-trip
		}
		again, err := ParseKeyBag(kb.Marshal())
		if err != nil {
			t.Fatalf("re-parse of marshalled bag: %v", err)
		}
		again.HMCK, kb.HMCK = nil, nil // HMCK: absent and empty are the same to readers
		if !reflect.DeepEqual(kb, again) {
			t.Fatalf("round trip changed the bag:\n%+v\n%+v", kb, again)
		}
	})
}
