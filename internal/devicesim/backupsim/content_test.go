package backupsim

import "testing"

// genKind is what ContentSize (the disk usage lockdown reports) uses instead of genItem; a
// disagreement would make the reported usage differ from what a full backup uploads.
func TestGenKindMatchesGenItem(t *testing.T) {
	seen := map[kind]int{}
	for _, seed := range []int64{0, 3, -7, 1 << 40} {
		for i := range 20000 {
			if got, want := genKind(seed, i), genItem(seed, i).kind; got != want {
				t.Fatalf("seed %d item %d: genKind %v, genItem %v", seed, i, got, want)
			}
			seen[genKind(seed, i)]++
		}
	}
	for _, k := range []kind{kindSmall, kindDatabase, kindVideo, kindPhoto, kindSymlink, kindAudio} {
		if seen[k] == 0 {
			t.Errorf("no item of kind %v in 80,000: the comparison did not cover it", k)
		}
	}
}
