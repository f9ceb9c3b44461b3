// Package art draws Snapback's icons: a phone outline with a status badge. It is shared by the
// generator (icons/gen), which writes the committed assets, and by the icons test, which checks
// that the committed assets are exactly what the generator draws today.
//
// Shapes are described as inside-tests in a 0..1 unit square and rasterised with 4×4
// supersampling, so the icons stay crisp at 16 px and need nothing beyond the standard library.
package art

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
)

// Badge is the status mark drawn in the lower right corner of the phone.
type Badge int

// The badges, one per tray state. BadgeNone is the plain app icon.
const (
	BadgeNone      Badge = iota
	BadgeIdle            // green disc with a check mark
	BadgeWorking         // blue disc with a downward arrow (data flowing to the computer)
	BadgeAttention       // amber disc with an exclamation mark
	BadgeError           // red disc with a cross
)

// Style says how the phone and badge are coloured.
type Style int

// The styles. Color suits Linux panels and Windows (mid-grey outline readable on light and dark
// panels); Template is the macOS menu-bar template (black plus alpha, macOS tints it for dark
// and light menu bars; the badge glyph is cut out so states stay distinct without colour);
// OnLight and OnDark are coloured variants for macOS menu bars when a coloured badge is wanted.
const (
	Color Style = iota
	Template
	OnLight
	OnDark
)

type palette struct {
	outline, screen color.NRGBA
	badge           color.NRGBA
	glyph           color.NRGBA
}

var badgeColors = map[Badge]color.NRGBA{
	BadgeIdle:      {0x2e, 0x9e, 0x4f, 0xff},
	BadgeWorking:   {0x2f, 0x7f, 0xd8, 0xff},
	BadgeAttention: {0xe8, 0xa3, 0x17, 0xff},
	BadgeError:     {0xd9, 0x3a, 0x32, 0xff},
}

func colors(b Badge, s Style) palette {
	white := color.NRGBA{0xff, 0xff, 0xff, 0xff}
	black := color.NRGBA{0, 0, 0, 0xff}
	clear := color.NRGBA{}
	switch s {
	case Template:
		return palette{outline: black, screen: clear, badge: black, glyph: clear}
	case OnLight:
		return palette{outline: color.NRGBA{0x20, 0x20, 0x20, 0xff}, screen: clear, badge: badgeColors[b], glyph: white}
	case OnDark:
		return palette{outline: color.NRGBA{0xf0, 0xf0, 0xf0, 0xff}, screen: clear, badge: badgeColors[b], glyph: white}
	default:
		return palette{outline: color.NRGBA{0x4a, 0x4f, 0x57, 0xff}, screen: color.NRGBA{0xf4, 0xf6, 0xf8, 0xff}, badge: badgeColors[b], glyph: white}
	}
}

// shape reports whether the unit-square point (x, y) is inside.
type shape func(x, y float64) bool

// Geometry in unit coordinates. The phone sits left of centre so the badge can overlap its
// lower right corner without hiding the outline.
const (
	phoneL, phoneT, phoneR, phoneB = 0.20, 0.04, 0.70, 0.96
	phoneRadius, phoneStroke       = 0.10, 0.075
	badgeX, badgeY, badgeR         = 0.72, 0.72, 0.27
	badgeGap                       = 0.06 // transparent ring that separates badge from phone
	glyphStroke                    = 0.055
)

func roundRect(l, t, r, b, rad float64) shape {
	return func(x, y float64) bool {
		if x < l || x > r || y < t || y > b {
			return false
		}
		cx := math.Max(l+rad, math.Min(x, r-rad))
		cy := math.Max(t+rad, math.Min(y, b-rad))
		return (x-cx)*(x-cx)+(y-cy)*(y-cy) <= rad*rad
	}
}

func disc(cx, cy, r float64) shape {
	return func(x, y float64) bool { return (x-cx)*(x-cx)+(y-cy)*(y-cy) <= r*r }
}

// segment is a stroked line with round caps (a capsule).
func segment(x0, y0, x1, y1, w float64) shape {
	return func(x, y float64) bool {
		dx, dy := x1-x0, y1-y0
		t := ((x-x0)*dx + (y-y0)*dy) / (dx*dx + dy*dy)
		t = math.Max(0, math.Min(1, t))
		px, py := x0+t*dx-x, y0+t*dy-y
		return px*px+py*py <= w*w/4
	}
}

func union(ss ...shape) shape {
	return func(x, y float64) bool {
		for _, s := range ss {
			if s(x, y) {
				return true
			}
		}
		return false
	}
}

func minus(a, b shape) shape { return func(x, y float64) bool { return a(x, y) && !b(x, y) } }

func glyph(b Badge) shape {
	cx, cy, w := badgeX, badgeY, glyphStroke
	switch b {
	case BadgeIdle:
		return union(segment(cx-0.12, cy+0.00, cx-0.04, cy+0.09, w), segment(cx-0.04, cy+0.09, cx+0.13, cy-0.09, w))
	case BadgeWorking:
		return union(segment(cx, cy-0.14, cx, cy+0.12, w), segment(cx-0.10, cy+0.02, cx, cy+0.12, w), segment(cx+0.10, cy+0.02, cx, cy+0.12, w))
	case BadgeAttention:
		return union(segment(cx, cy-0.14, cx, cy+0.04, w*1.15), disc(cx, cy+0.125, w*0.7))
	case BadgeError:
		return union(segment(cx-0.10, cy-0.10, cx+0.10, cy+0.10, w), segment(cx-0.10, cy+0.10, cx+0.10, cy-0.10, w))
	}
	return func(float64, float64) bool { return false }
}

// Render draws the icon for badge b in style s at size×size pixels.
func Render(b Badge, s Style, size int) *image.NRGBA {
	p := colors(b, s)
	outer := roundRect(phoneL, phoneT, phoneR, phoneB, phoneRadius)
	inner := roundRect(phoneL+phoneStroke, phoneT+phoneStroke, phoneR-phoneStroke, phoneB-phoneStroke, phoneRadius-phoneStroke/2)
	speaker := segment(0.40, 0.12, 0.50, 0.12, 0.03)
	layers := []struct {
		s shape
		c color.NRGBA
	}{
		{minus(inner, speaker), p.screen},
		{union(minus(outer, inner), speaker), p.outline},
	}
	if b != BadgeNone {
		gap := disc(badgeX, badgeY, badgeR+badgeGap)
		// The gap is punched out of the phone layers so the badge reads as separate at 16 px.
		for i := range layers {
			layers[i].s = minus(layers[i].s, gap)
		}
		layers = append(layers,
			struct {
				s shape
				c color.NRGBA
			}{minus(disc(badgeX, badgeY, badgeR), glyph(b)), p.badge},
			struct {
				s shape
				c color.NRGBA
			}{func(x, y float64) bool { return disc(badgeX, badgeY, badgeR)(x, y) && glyph(b)(x, y) }, p.glyph},
		)
	}
	img := image.NewNRGBA(image.Rect(0, 0, size, size))
	for _, l := range layers {
		if l.c.A == 0 {
			continue // transparent layers only shape the others
		}
		mask := coverage(l.s, size)
		draw.DrawMask(img, img.Bounds(), image.NewUniform(l.c), image.Point{}, mask, image.Point{}, draw.Over)
	}
	return img
}

// coverage rasterises s with 4×4 samples per pixel into an alpha mask.
func coverage(s shape, size int) *image.Alpha {
	const n = 4
	m := image.NewAlpha(image.Rect(0, 0, size, size))
	for py := 0; py < size; py++ {
		for px := 0; px < size; px++ {
			hits := 0
			for sy := 0; sy < n; sy++ {
				for sx := 0; sx < n; sx++ {
					x := (float64(px) + (float64(sx)+0.5)/n) / float64(size)
					y := (float64(py) + (float64(sy)+0.5)/n) / float64(size)
					if s(x, y) {
						hits++
					}
				}
			}
			m.Pix[py*m.Stride+px] = uint8(hits * 255 / (n * n))
		}
	}
	return m
}

// PNG encodes img; encoding is deterministic, so regenerated files are byte-identical.
func PNG(img image.Image) []byte {
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestCompression}
	if err := enc.Encode(&buf, img); err != nil {
		panic(err) // encoding to memory fails only on programmer error
	}
	return buf.Bytes()
}

// ICO encodes images as a Windows icon with 32-bit BGRA DIB entries. DIB entries, not PNG ones,
// because LoadImage on older Windows builds only accepts PNG for the 256 px size.
func ICO(imgs ...*image.NRGBA) []byte {
	var head, body bytes.Buffer
	le := binary.LittleEndian
	_ = binary.Write(&head, le, [3]uint16{0, 1, uint16(len(imgs))})
	offset := 6 + 16*len(imgs)
	for _, img := range imgs {
		w, h := img.Bounds().Dx(), img.Bounds().Dy()
		if w > 255 || h > 255 {
			panic(fmt.Sprintf("ICO: %dx%d too large for a DIB entry", w, h))
		}
		dib := dibEntry(img)
		_ = binary.Write(&head, le, struct {
			W, H, Colors, Reserved uint8
			Planes, BPP            uint16
			Size, Offset           uint32
		}{uint8(w), uint8(h), 0, 0, 1, 32, uint32(len(dib)), uint32(offset)})
		body.Write(dib)
		offset += len(dib)
	}
	return append(head.Bytes(), body.Bytes()...)
}

func dibEntry(img *image.NRGBA) []byte {
	w, h := img.Bounds().Dx(), img.Bounds().Dy()
	var b bytes.Buffer
	le := binary.LittleEndian
	// BITMAPINFOHEADER; the height counts the XOR bitmap and the AND mask together.
	_ = binary.Write(&b, le, struct {
		Size            uint32
		W, H            int32
		Planes, BPP     uint16
		Compression     uint32
		ImageSize       uint32
		XPPM, YPPM      int32
		Used, Important uint32
	}{40, int32(w), int32(2 * h), 1, 32, 0, 0, 0, 0, 0, 0})
	for y := h - 1; y >= 0; y-- { // bottom-up rows
		for x := 0; x < w; x++ {
			c := img.NRGBAAt(x, y)
			b.Write([]byte{c.B, c.G, c.R, c.A})
		}
	}
	// AND mask: 1 bit per pixel, rows padded to 32 bits; all zero because alpha does the work.
	stride := (w + 31) / 32 * 4
	b.Write(make([]byte, stride*h))
	return b.Bytes()
}

// File is one generated asset.
type File struct {
	Name string
	Data []byte
}

// States lists the badge for each tray state, in the order of icons.State.
var States = []struct {
	Name  string
	Badge Badge
}{
	{"idle", BadgeIdle},
	{"working", BadgeWorking},
	{"attention", BadgeAttention},
	{"error", BadgeError},
}

// Files returns every asset the icons package embeds, by file name.
func Files() []File {
	var fs []File
	for _, st := range States {
		fs = append(fs,
			File{"linux/" + st.Name + ".png", PNG(Render(st.Badge, Color, 64))},
			File{"darwin/" + st.Name + "-template.png", PNG(Render(st.Badge, Template, 32))},
			File{"darwin/" + st.Name + "-light.png", PNG(Render(st.Badge, OnLight, 32))},
			File{"darwin/" + st.Name + "-dark.png", PNG(Render(st.Badge, OnDark, 32))},
			File{"windows/" + st.Name + ".ico", ICO(Render(st.Badge, Color, 16), Render(st.Badge, Color, 24), Render(st.Badge, Color, 32), Render(st.Badge, Color, 48))},
		)
	}
	for _, size := range []int{16, 32, 48, 64, 128, 256, 512} {
		fs = append(fs, File{fmt.Sprintf("app/snapback-%d.png", size), PNG(Render(BadgeNone, Color, size))})
	}
	fs = append(fs, File{"app/snapback.ico", ICO(Render(BadgeNone, Color, 16), Render(BadgeNone, Color, 32), Render(BadgeNone, Color, 48))})
	return fs
}
