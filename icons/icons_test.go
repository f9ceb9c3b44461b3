package icons

import (
	"bytes"
	"encoding/binary"
	"image/png"
	"testing"

	"snapback/icons/internal/art"
)

// The committed assets must be exactly what the generator draws, so nobody edits a PNG by hand
// and forgets the code (or the other way round). Fix with `go generate ./icons`.
func TestAssetsMatchGenerator(t *testing.T) {
	for _, f := range art.Files() {
		got, err := assets.ReadFile("assets/" + f.Name)
		if err != nil {
			t.Errorf("asset %s is not committed: %v (run go generate ./icons)", f.Name, err)
			continue
		}
		if !bytes.Equal(got, f.Data) {
			t.Errorf("asset %s differs from the generator output (run go generate ./icons)", f.Name)
		}
	}
}

func TestForEveryStateAndPlatform(t *testing.T) {
	wantPNGSize := map[Platform]int{Linux: 64, MacTemplate: 32, MacLight: 32, MacDark: 32}
	seen := map[string]string{}
	for s := Idle; s <= Error; s++ {
		for p, size := range wantPNGSize {
			b := For(s, p)
			img, err := png.Decode(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("For(%v, %d): not a PNG: %v", s, p, err)
			}
			if got := img.Bounds().Dx(); got != size {
				t.Errorf("For(%v, %d) width = %d, want %d", s, p, got, size)
			}
			if prev, dup := seen[string(b)]; dup {
				t.Errorf("For(%v, %d) is the same image as %s", s, p, prev)
			}
			seen[string(b)] = s.String()
		}
		ico := For(s, Windows)
		var dir struct{ Reserved, Type, Count uint16 }
		if err := binary.Read(bytes.NewReader(ico), binary.LittleEndian, &dir); err != nil || dir.Type != 1 || dir.Count != 4 {
			t.Errorf("For(%v, Windows) header = %+v (err %v), want an icon with 4 images", s, dir, err)
		}
		// First directory entry: 16×16, 32 bpp, data inside the file.
		e := ico[6:22]
		size := binary.LittleEndian.Uint32(e[8:12])
		off := binary.LittleEndian.Uint32(e[12:16])
		if e[0] != 16 || e[1] != 16 || binary.LittleEndian.Uint16(e[6:8]) != 32 || int(off+size) > len(ico) {
			t.Errorf("For(%v, Windows) first entry = % x, want 16×16×32 inside %d bytes", s, e, len(ico))
		}
	}
}

// Template icons must be pure black plus alpha, or macOS renders them as a grey block.
func TestTemplateIconsAreBlackWithAlpha(t *testing.T) {
	for s := Idle; s <= Error; s++ {
		img, err := png.Decode(bytes.NewReader(For(s, MacTemplate)))
		if err != nil {
			t.Fatal(err)
		}
		b := img.Bounds()
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				if r, g, bl, _ := img.At(x, y).RGBA(); r != 0 || g != 0 || bl != 0 {
					t.Fatalf("template %v pixel (%d,%d) has colour %d,%d,%d", s, x, y, r, g, bl)
				}
			}
		}
	}
}

func TestUnknownValuesFallBack(t *testing.T) {
	if !bytes.Equal(For(State(99), Platform(99)), For(Idle, Linux)) {
		t.Error("For(99, 99) is not the idle Linux icon")
	}
	if State(7).String() != "State(7)" || Working.String() != "working" {
		t.Errorf("String() = %q, %q", State(7).String(), Working.String())
	}
	if _, err := png.Decode(bytes.NewReader(App(256))); err != nil {
		t.Errorf("App(256): %v", err)
	}
}
