package backupsim

import (
	"crypto/sha1"
	"fmt"
	"io"
	"math"

	"howett.net/plist"

	"snapback/internal/backupfmt"
)

// Fixed metadata of the generated content: a base time around 2021 and mobile's uid/gid.
const (
	baseTime = 1_600_000_000
	mobileID = 501
)

// hostileTarget is the symlink target a hostile device uses: it leaves the domain.
const hostileTarget = "../../../../../../../../etc/passwd"

// record builds the Manifest.db row of item i at version v. withDigest adds the SHA-1 of the
// content for system domains, which means generating the bytes once more; only Manifest.db
// needs it.
func (d *Device) record(i int, v uint32, withDigest bool) backupfmt.Record {
	seed := d.opts.Seed
	it := genItem(seed, i)
	born, mod0 := itemTimes(seed, i)
	mod := mod0 + int64(v-1)*versionStep
	f := backupfmt.MBFile{
		RelativePath:     it.rel,
		Birth:            born,
		LastModified:     mod,
		LastStatusChange: mod + 1,
		InodeNumber:      uint64(100_000 + 3*i),
		UserID:           mobileID,
		GroupID:          mobileID,
		Mode:             0o100644,
		ProtectionClass:  3,
	}
	switch it.kind {
	case kindSymlink:
		f.Mode = 0o120755
		f.ProtectionClass = 0
		f.Target = fmt.Sprintf("/private/var/mobile/Library/Shared/target_%07d", i)
		if d.opts.Hostile {
			f.Target = hostileTarget
		}
	case kindPhoto, kindVideo:
		f.ProtectionClass = 4
		if withDigest {
			f.ExtendedAttributes = photoXattrs(seed, i)
		}
	}
	if i == 0 {
		f.Mode = 0o100600
		f.UserID, f.GroupID = 64, 64 // _securityd
	}
	f.Size = d.size(i, it.kind, v)
	if withDigest && it.kind != kindSymlink && d.keys != nil {
		// Every file row of an encrypted backup carries its key, empty files too. Wrapping
		// fails only for a class the keybag lacks; 3 and 4 are always password-wrapped.
		f.EncryptionKey, _ = d.encryptionKey(i, v, f.ProtectionClass)
	}
	if withDigest && it.kind != kindSymlink && systemDomains[it.domain] {
		// The SHA-1 of the stored file, which for an encrypted backup is the ciphertext
		// (backup-format.md §2.2; a single source says so).
		sum := sha1.New()
		io.Copy(sum, d.blob(i, v, f.Size)) //nolint:errcheck // generated content cannot fail
		f.Digest = sum.Sum(nil)
	}
	return backupfmt.Record{
		FileID: backupfmt.FileID(it.domain, it.rel), Domain: it.domain, RelativePath: it.rel,
		Flags: it.kind.flags(), File: f,
	}
}

// versionStep is how far each new version moves a file's LastModified, so the version can
// be read back from a Manifest.db row (restore does).
const versionStep = 3607

// itemTimes returns item i's birth time and the LastModified of its first version.
func itemTimes(seed int64, i int) (born, mod0 int64) {
	h := hash3(seed, uint64(i), 4)
	born = int64(baseTime + h%30_000_000)
	return born, born + int64(h>>32%5_000_000)
}

// versionOf reads the version of item i back from a LastModified time.
func versionOf(seed int64, i int, mod int64) (uint32, bool) {
	_, mod0 := itemTimes(seed, i)
	d := mod - mod0
	if d < 0 || d%versionStep != 0 || d/versionStep >= math.MaxUint32-1 {
		return 0, false
	}
	return uint32(d/versionStep) + 1, true
}

func (d *Device) size(i int, k kind, v uint32) int64 {
	return int64(math.Round(weight(d.opts.Seed, i, k, v) * d.scale))
}

// dirRecord builds the row of a directory. Directories carry all scalar fields too.
func (d *Device) dirRecord(it item) backupfmt.Record {
	h := hash3(d.opts.Seed, strHash(it.domain), strHash(it.rel)+5)
	t := int64(baseTime - 10_000_000 + h%1_000_000)
	return backupfmt.Record{
		FileID: backupfmt.FileID(it.domain, it.rel), Domain: it.domain, RelativePath: it.rel,
		Flags: backupfmt.FlagDir,
		File: backupfmt.MBFile{
			RelativePath: it.rel, Birth: t, LastModified: t, LastStatusChange: t,
			Mode: 0o40755, InodeNumber: 10_000 + h%80_000, UserID: mobileID, GroupID: mobileID,
		},
	}
}

// photoXattrs is the embedded binary-plist xattr dict real CameraRoll rows carry.
func photoXattrs(seed int64, i int) []byte {
	h := hash3(seed, uint64(i), 6)
	b, err := plist.Marshal(map[string][]byte{
		"com.apple.assetsd.UUID": fmt.Appendf(nil, "%08X-%04X-4%03X-8%03X-%012X",
			uint32(h), uint16(h>>32), uint16(h>>48)&0xfff, uint16(h>>20)&0xfff, h&0xffffffffffff),
		"com.apple.assetsd.avalanche.type": {0},
	}, plist.BinaryFormat)
	if err != nil {
		return nil
	}
	return b
}

// hostileRecords are extra Manifest.db rows a hostile device reports: relative paths that
// escape the domain once a host joins them to a folder. Their blobs live at valid fileIDs.
func hostileRecords() []backupfmt.Record {
	paths := []string{"../../../../escape-dotdot.txt", "/tmp/snapback-hostile-absolute.txt",
		`Library\..\..\escape-backslash.txt`, "Library/nul\x00byte.txt"}
	out := make([]backupfmt.Record, 0, len(paths))
	for j, p := range paths {
		out = append(out, backupfmt.Record{
			FileID: backupfmt.FileID("HomeDomain", p), Domain: "HomeDomain", RelativePath: p,
			Flags: backupfmt.FlagFile,
			File: backupfmt.MBFile{RelativePath: p, Size: int64(len(hostileBody)), Mode: 0o100644,
				LastModified: baseTime, LastStatusChange: baseTime, Birth: baseTime,
				InodeNumber: uint64(900 + j), UserID: mobileID, GroupID: mobileID, ProtectionClass: 3},
		})
	}
	return out
}

const hostileBody = "snapback hostile-device test payload\n"

// strHash is FNV-1a, to derive per-directory metadata from its path.
func strHash(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}
