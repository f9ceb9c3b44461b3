package backupsim

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"snapback/internal/backupfmt"
)

// The simulated content is a pure function of the seed: item i (0 ≤ i < count) always has
// the same domain, path and kind, and its size, times and bytes depend only on (seed, i,
// version). The device therefore stores nothing per file but a version number, and a
// million-file, multi-gigabyte device costs a few megabytes of memory.

type kind uint8

const (
	kindSmall kind = iota
	kindPhoto
	kindVideo
	kindAudio
	kindDatabase
	kindSymlink
)

// appBundles are the third-party apps the device "has"; each gets AppDomain-<bundle> and
// some an AppDomainGroup-group.<bundle>.
var appBundles = []string{
	"com.spotify.client",
	"net.whatsapp.WhatsApp",
	"com.burbn.instagram",
	"org.example.notes",
	"com.example.tasks",
}

// smallPlaces are where small files live: domain, directory, file prefix, extension.
var smallPlaces = []struct{ domain, dir, prefix, ext string }{
	{"HomeDomain", "Library/Preferences", "com.apple.pref", "plist"},
	{"HomeDomain", "Library/Notes", "note", "txt"},
	{"HomeDomain", "Library/Safari", "bookmark", "plist"},
	{"HomeDomain", "Library/Mail", "envelope", "emlx"},
	{"WirelessDomain", "Library/Preferences", "wifi", "plist"},
	{"SystemPreferencesDomain", "SystemConfiguration", "network", "plist"},
	{"MediaDomain", "Library/SMS/Attachments/0a", "attachment", "jpg"},
	{"AppDomain-com.spotify.client", "Documents", "playlist", "json"},
	{"AppDomain-com.spotify.client", "Library/Preferences", "com.spotify.client", "plist"},
	{"AppDomain-net.whatsapp.WhatsApp", "Documents", "chat", "sqlite"},
	{"AppDomain-com.burbn.instagram", "Library/Application Support", "cache", "bin"},
	{"AppDomain-org.example.notes", "Documents/Notes", "Note", "md"},
	{"AppDomain-com.example.tasks", "Documents", "task", "json"},
	{"AppDomainGroup-group.net.whatsapp.WhatsApp.shared", "Message/Media", "media", "jpg"},
	{"AppDomainGroup-group.com.spotify.client", "Library/Caches", "blob", "dat"},
}

const (
	dcimFolders   = 5 // Media/DCIM/100APPLE … 104APPLE
	symlinkDomain = "HomeDomain"
	symlinkDir    = "Library/Links"
)

// systemDomains carry a Digest in their MBFile rows, like real backups.
var systemDomains = map[string]bool{
	"HomeDomain": true, "KeychainDomain": true, "WirelessDomain": true, "SystemPreferencesDomain": true,
	"RootDomain": true, "DatabaseDomain": true,
}

// item is the identity of generated item i (independent of its version).
type item struct {
	domain string
	rel    string
	kind   kind
}

func (k kind) flags() int64 {
	if k == kindSymlink {
		return backupfmt.FlagSymlink
	}
	return backupfmt.FlagFile
}

// mix64 is SplitMix64's finaliser: a fast bijective 64-bit hash.
func mix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func hash3(seed int64, a, b uint64) uint64 {
	return mix64(mix64(uint64(seed)^0x5bd1e995) ^ mix64(a) ^ mix64(b+0x632be59bd9b4e019))
}

// unit maps a hash to [0, 1).
func unit(h uint64) float64 { return float64(h>>11) / (1 << 53) }

// genItem returns item i. Indices 0 and 1 are fixed well-known files; the rest follow a
// realistic mix: mostly small files, some multi-MB photos, few large videos.
func genItem(seed int64, i int) item {
	switch i {
	case 0:
		return item{"KeychainDomain", "keychain-backup.plist", kindSmall}
	case 1:
		return item{"HomeDomain", "Library/SMS/sms.db", kindDatabase}
	}
	h := hash3(seed, uint64(i), 1)
	switch k := genKind(seed, i); k {
	case kindVideo:
		return item{"CameraRollDomain", fmt.Sprintf("Media/DCIM/%dAPPLE/IMG_%07d.MOV", 100+i%dcimFolders, i), k}
	case kindPhoto:
		return item{"CameraRollDomain", fmt.Sprintf("Media/DCIM/%dAPPLE/IMG_%07d.HEIC", 100+i%dcimFolders, i), k}
	case kindSymlink:
		return item{symlinkDomain, fmt.Sprintf("%s/link_%07d", symlinkDir, i), k}
	case kindAudio:
		return item{"MediaDomain", fmt.Sprintf("Media/Recordings/Recording_%07d.m4a", i), k}
	}
	p := smallPlaces[(h>>20)%uint64(len(smallPlaces))]
	return item{p.domain, fmt.Sprintf("%s/%s_%07d.%s", p.dir, p.prefix, i, p.ext), kindSmall}
}

// genKind is genItem(seed, i).kind without formatting its path: what every per-file pass
// that needs only the kind uses (ContentSize at every disk-usage query, the upload plan,
// the size scale at start).
func genKind(seed int64, i int) kind {
	switch i {
	case 0:
		return kindSmall
	case 1:
		return kindDatabase
	}
	switch c := hash3(seed, uint64(i), 1) % 1000; {
	case c < 6:
		return kindVideo
	case c < 90:
		return kindPhoto
	case c < 100:
		return kindSymlink
	case c < 130:
		return kindAudio
	}
	return kindSmall
}

// itemIndex recovers i from a (domain, relativePath) that genItem may have produced, so a
// host's Manifest.db can be matched against the device without an index in memory. ok is
// false for anything the generator cannot have produced.
func itemIndex(seed int64, domain, rel string) (int, bool) {
	switch {
	case domain == "KeychainDomain" && rel == "keychain-backup.plist":
		return 0, true
	case domain == "HomeDomain" && rel == "Library/SMS/sms.db":
		return 1, true
	}
	base := rel[strings.LastIndexByte(rel, '/')+1:]
	if dot := strings.LastIndexByte(base, '.'); dot >= 0 {
		base = base[:dot]
	}
	base = base[strings.LastIndexByte(base, '_')+1:]
	if len(base) < 7 {
		return 0, false
	}
	n, err := strconv.Atoi(base)
	if err != nil || n < 2 {
		return 0, false
	}
	it := genItem(seed, n)
	if it.domain != domain || it.rel != rel {
		return 0, false
	}
	return n, true
}

// weight is the unscaled size of item i at version v (v ≥ 1); versions after the first vary
// it a little so a modification usually changes the size too.
func weight(seed int64, i int, k kind, v uint32) float64 {
	u := unit(hash3(seed, uint64(i), 2))
	var w float64
	switch k {
	case kindSymlink:
		return 0
	case kindVideo:
		w = 20e6 + u*60e6
	case kindPhoto:
		w = 1.5e6 + u*4.5e6
	case kindAudio:
		w = 50e3 + u*450e3
	case kindDatabase:
		w = 2e6
	default: // log-uniform 200 B … 64 KiB
		w = 200 * math.Pow(64*1024/200.0, u)
	}
	if v > 1 {
		w *= 0.8 + 0.4*unit(hash3(seed, uint64(i), 3+uint64(v)))
	}
	return w
}

// contentKey selects the byte stream of item i at version v.
func contentKey(seed int64, i int, v uint32) uint64 {
	return hash3(seed, uint64(i)<<20|uint64(v), 0xc0ffee)
}

// contentReader produces the bytes of one file version on the fly. Byte n depends only on
// (key, n), so any chunking yields the same stream.
type contentReader struct {
	key       uint64
	off, size int64
}

func (r *contentReader) Read(p []byte) (int, error) {
	if r.off >= r.size {
		return 0, io.EOF
	}
	if rem := r.size - r.off; int64(len(p)) > rem {
		p = p[:rem]
	}
	n := 0
	// Unaligned head: produce the containing word and copy the needed part.
	for n < len(p) && (r.off+int64(n))%8 != 0 {
		off := r.off + int64(n)
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], mix64(r.key^uint64(off/8)))
		n += copy(p[n:], w[off%8:])
	}
	word := uint64((r.off + int64(n)) / 8)
	for ; n+8 <= len(p); n += 8 {
		binary.LittleEndian.PutUint64(p[n:], mix64(r.key^word))
		word++
	}
	if n < len(p) {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], mix64(r.key^word))
		n += copy(p[n:], w[:])
	}
	r.off += int64(n)
	return n, nil
}

func (r *contentReader) Close() error { return nil }

// WriteTo streams the rest of the content with one buffer no larger than the file, so
// io.Copy (used for Digests) does not allocate 32 KiB per small file.
func (r *contentReader) WriteTo(w io.Writer) (int64, error) {
	rem := r.size - r.off
	if rem <= 0 {
		return 0, nil
	}
	buf := make([]byte, min(rem, 32<<10))
	var total int64
	for {
		n, err := r.Read(buf)
		if n > 0 {
			m, werr := w.Write(buf[:n])
			total += int64(m)
			if werr != nil {
				return total, werr
			}
		}
		if err == io.EOF {
			return total, nil
		}
	}
}

// dirRows lists every directory row the device has: each domain's root ("") and every
// directory above a generated file. It is small and fixed for a given generator.
func dirRows() []item {
	seen := map[[2]string]bool{}
	var out []item
	add := func(domain, dir string) {
		parts := strings.Split(dir, "/")
		for j := 0; j <= len(parts); j++ {
			p := strings.Join(parts[:j], "/")
			if dir == "" && j > 0 {
				break
			}
			k := [2]string{domain, p}
			if !seen[k] {
				seen[k] = true
				out = append(out, item{domain, p, 0})
			}
		}
	}
	add("KeychainDomain", "")
	add("HomeDomain", "Library/SMS")
	for f := range dcimFolders {
		add("CameraRollDomain", fmt.Sprintf("Media/DCIM/%dAPPLE", 100+f))
	}
	add(symlinkDomain, symlinkDir)
	add("MediaDomain", "Media/Recordings")
	for _, p := range smallPlaces {
		add(p.domain, p.dir)
	}
	return out
}

// keyBag builds an unencrypted-style BackupKeyBag TLV (backup-format.md §3.1): header with
// VERS 5, TYPE 1 (backup), HMCK of zeros, SALT and ITER, then 11 class records. The keys are
// random-looking bytes from the seed; nothing can unwrap them, as in a real unencrypted bag.
func keyBag(seed int64) []byte {
	var b []byte
	fill := func(n int, tag uint64) []byte {
		out := make([]byte, n)
		for j := range out {
			out[j] = byte(hash3(seed, tag, uint64(j)))
		}
		return out
	}
	tlv := func(tag string, v []byte) {
		b = append(b, tag...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	u32 := func(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }
	tlv("VERS", u32(5))
	tlv("TYPE", u32(1))
	tlv("UUID", fill(16, 100))
	tlv("HMCK", make([]byte, 40))
	tlv("WRAP", u32(0))
	tlv("SALT", fill(20, 101))
	tlv("ITER", u32(10000))
	for class := uint32(1); class <= 11; class++ {
		tlv("UUID", fill(16, 200+uint64(class)))
		tlv("CLAS", u32(class))
		wrap := uint32(2)
		if class >= 5 {
			wrap = 3
		}
		tlv("WRAP", u32(wrap))
		tlv("KTYP", u32(0))
		tlv("WPKY", fill(40, 300+uint64(class)))
	}
	return b
}
