// Package backupcrypto implements the encryption of iOS backups (iOS 10.2 and later, with the
// older single-KDF bags still readable): the BackupKeyBag TLV, the password → KEK derivation,
// RFC 3394 AES key wrap, the unwrapping of class, Manifest.db and per-file keys, and streaming
// AES-256-CBC with PKCS#7 padding. It has both sides: the reading side for browse/extract and
// the writing side for the simulated device and tests. See backup-format.md §3 and §4.
//
// Nothing here writes a key or password to disk. Keys live in memory in a *Keys for as long
// as the caller keeps it; Keys.Destroy zeroes them.
package backupcrypto

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrMalformedKeyBag is wrapped by every keybag parsing error.
var ErrMalformedKeyBag = errors.New("malformed backup keybag")

// Bounds on what a keybag may contain. Real bags are about 1.4 KB with 11 class records; the
// limits are far above that but keep hostile input from costing memory or hours of CPU.
const (
	maxKeyBagSize = 64 << 10
	maxClasses    = 64
	maxSaltLen    = 64
	maxPBKYLen    = 256
	// MaxRounds bounds ITER and DPIC. Real bags use 10,000 and 10,000,000; a bag asking for
	// billions of rounds would pin a core for hours before the password could be checked.
	MaxRounds = 100_000_000
)

// KeyBag is a parsed BackupKeyBag (Manifest.plist). Header fields are zero when absent.
type KeyBag struct {
	Version uint32 // VERS: 5 on modern iOS
	Type    uint32 // TYPE: 1 = backup
	UUID    []byte // UUID: the bag's own, 16 bytes
	HMCK    []byte // HMCK: wrapped HMAC key, unused by readers
	Wrap    uint32 // WRAP: bag-level wrap, 0 in backups
	Salt    []byte // SALT: PBKDF2-HMAC-SHA1 salt
	Iter    uint32 // ITER: PBKDF2-HMAC-SHA1 rounds
	DPWT    uint32 // DPWT: double protection wrap type (iOS ≥ 10.2)
	DPIC    uint32 // DPIC: PBKDF2-HMAC-SHA256 rounds (iOS ≥ 10.2)
	DPSL    []byte // DPSL: PBKDF2-HMAC-SHA256 salt (iOS ≥ 10.2)
	Classes []ClassKey
}

// ClassKey is one class-key record of a keybag.
type ClassKey struct {
	UUID       []byte // 16 bytes
	Class      uint32 // protection class 1–11
	Wrap       uint32 // WrapDevice | WrapPassword
	KeyType    uint32 // 0 AES, 1 Curve25519
	WrappedKey []byte // WPKY: RFC 3394-wrapped class key
	PublicKey  []byte // PBKY: not present in backup bags
}

// Class-key WRAP bits.
const (
	WrapDevice   = 1 // wrapped with the device UID key: unusable off-device
	WrapPassword = 2 // wrapped with the password-derived KEK
)

// DoubleKDF reports whether the bag uses the iOS ≥ 10.2 two-stage derivation.
func (b *KeyBag) DoubleKDF() bool { return len(b.DPSL) > 0 }

// ParseKeyBag parses a BackupKeyBag. Every length is checked against the input and against
// fixed sizes; unknown tags are skipped (bounded by the input). Errors wrap ErrMalformedKeyBag.
func ParseKeyBag(data []byte) (*KeyBag, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrMalformedKeyBag)
	}
	if len(data) > maxKeyBagSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrMalformedKeyBag, len(data), maxKeyBagSize)
	}
	bag := &KeyBag{}
	var cur *ClassKey // nil while in the header
	seen := map[string]bool{}
	for off := 0; off < len(data); {
		if len(data)-off < 8 {
			return nil, fmt.Errorf("%w: truncated tag header at offset %d", ErrMalformedKeyBag, off)
		}
		tag := string(data[off : off+4])
		n := binary.BigEndian.Uint32(data[off+4 : off+8])
		off += 8
		if uint64(n) > uint64(len(data)-off) {
			return nil, fmt.Errorf("%w: tag %q at offset %d claims %d bytes, %d left", ErrMalformedKeyBag, printable(tag), off-8, n, len(data)-off)
		}
		v := data[off : off+int(n)]
		off += int(n)

		if tag == "UUID" && bag.UUID != nil {
			if len(bag.Classes) >= maxClasses {
				return nil, fmt.Errorf("%w: more than %d class keys", ErrMalformedKeyBag, maxClasses)
			}
			bag.Classes = append(bag.Classes, ClassKey{})
			cur = &bag.Classes[len(bag.Classes)-1]
			seen = map[string]bool{}
		}
		if seen[tag] {
			return nil, fmt.Errorf("%w: duplicate tag %q in %s", ErrMalformedKeyBag, printable(tag), where(cur, bag))
		}
		seen[tag] = true
		var err error
		if cur == nil {
			err = bag.setHeader(tag, v)
		} else {
			err = cur.set(tag, v)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrMalformedKeyBag, where(cur, bag), err)
		}
	}
	if bag.UUID == nil {
		return nil, fmt.Errorf("%w: no UUID", ErrMalformedKeyBag)
	}
	if len(bag.Classes) == 0 {
		return nil, fmt.Errorf("%w: no class keys", ErrMalformedKeyBag)
	}
	for i := range bag.Classes {
		c := &bag.Classes[i]
		if c.Class == 0 {
			return nil, fmt.Errorf("%w: class key %d has no CLAS", ErrMalformedKeyBag, i+1)
		}
		if c.WrappedKey == nil && c.Wrap&WrapPassword != 0 {
			return nil, fmt.Errorf("%w: class %d is password-wrapped but has no WPKY", ErrMalformedKeyBag, c.Class)
		}
	}
	return bag, nil
}

func where(cur *ClassKey, bag *KeyBag) string {
	if cur == nil {
		return "header"
	}
	return fmt.Sprintf("class key %d", len(bag.Classes))
}

func (b *KeyBag) setHeader(tag string, v []byte) error {
	var err error
	switch tag {
	case "VERS":
		b.Version, err = u32(tag, v)
	case "TYPE":
		b.Type, err = u32(tag, v)
	case "UUID":
		if len(v) != 16 {
			return fmt.Errorf("UUID is %d bytes, want 16", len(v))
		}
		b.UUID = clone(v)
	case "HMCK":
		if len(v) > 64 {
			return fmt.Errorf("HMCK is %d bytes", len(v))
		}
		b.HMCK = clone(v)
	case "WRAP":
		b.Wrap, err = u32(tag, v)
	case "SALT":
		b.Salt, err = salt(tag, v)
	case "ITER":
		b.Iter, err = rounds(tag, v)
	case "DPWT":
		b.DPWT, err = u32(tag, v)
	case "DPIC":
		b.DPIC, err = rounds(tag, v)
	case "DPSL":
		b.DPSL, err = salt(tag, v)
	}
	// Unknown header tags are ignored: readers in the wild do the same, and newer iOS
	// versions may add some.
	return err
}

func (c *ClassKey) set(tag string, v []byte) error {
	var err error
	switch tag {
	case "UUID":
		if len(v) != 16 {
			return fmt.Errorf("UUID is %d bytes, want 16", len(v))
		}
		c.UUID = clone(v)
	case "CLAS":
		c.Class, err = u32(tag, v)
		if err == nil && (c.Class == 0 || c.Class > 32) {
			err = fmt.Errorf("CLAS %d out of range", c.Class)
		}
	case "WRAP":
		c.Wrap, err = u32(tag, v)
	case "KTYP":
		c.KeyType, err = u32(tag, v)
	case "WPKY":
		// A wrapped AES key is the key plus one 8-byte block; class keys are 16–32 bytes.
		if len(v) < 24 || len(v) > 40 || len(v)%8 != 0 {
			return fmt.Errorf("WPKY is %d bytes, want 24, 32 or 40", len(v))
		}
		c.WrappedKey = clone(v)
	case "PBKY":
		if len(v) > maxPBKYLen {
			return fmt.Errorf("PBKY is %d bytes", len(v))
		}
		c.PublicKey = clone(v)
	}
	return err
}

func u32(tag string, v []byte) (uint32, error) {
	if len(v) != 4 {
		return 0, fmt.Errorf("%s is %d bytes, want 4", tag, len(v))
	}
	return binary.BigEndian.Uint32(v), nil
}

func rounds(tag string, v []byte) (uint32, error) {
	n, err := u32(tag, v)
	if err != nil {
		return 0, err
	}
	if n == 0 || n > MaxRounds {
		return 0, fmt.Errorf("%s %d out of range 1..%d", tag, n, MaxRounds)
	}
	return n, nil
}

func salt(tag string, v []byte) ([]byte, error) {
	if len(v) == 0 || len(v) > maxSaltLen {
		return nil, fmt.Errorf("%s is %d bytes, want 1..%d", tag, len(v), maxSaltLen)
	}
	return clone(v), nil
}

func clone(v []byte) []byte { return append([]byte(nil), v...) }

// printable keeps hostile tag bytes out of terminals and logs.
func printable(tag string) string {
	for i := 0; i < len(tag); i++ {
		if tag[i] < 0x20 || tag[i] > 0x7e {
			return fmt.Sprintf("%x", tag)
		}
	}
	return tag
}

// Marshal encodes the bag in the tag order real devices use: VERS, TYPE, UUID, HMCK, WRAP,
// SALT, ITER, then DPWT, DPIC, DPSL when present, then each class record (UUID, CLAS, WRAP,
// KTYP, WPKY, PBKY when present).
func (b *KeyBag) Marshal() []byte {
	var out []byte
	put := func(tag string, v []byte) {
		out = append(out, tag...)
		out = binary.BigEndian.AppendUint32(out, uint32(len(v)))
		out = append(out, v...)
	}
	putU32 := func(tag string, n uint32) { put(tag, binary.BigEndian.AppendUint32(nil, n)) }
	putU32("VERS", b.Version)
	putU32("TYPE", b.Type)
	put("UUID", b.UUID)
	if b.HMCK != nil {
		put("HMCK", b.HMCK)
	}
	putU32("WRAP", b.Wrap)
	put("SALT", b.Salt)
	putU32("ITER", b.Iter)
	if b.DoubleKDF() {
		putU32("DPWT", b.DPWT)
		putU32("DPIC", b.DPIC)
		put("DPSL", b.DPSL)
	}
	for _, c := range b.Classes {
		put("UUID", c.UUID)
		putU32("CLAS", c.Class)
		putU32("WRAP", c.Wrap)
		putU32("KTYP", c.KeyType)
		if c.WrappedKey != nil {
			put("WPKY", c.WrappedKey)
		}
		if c.PublicKey != nil {
			put("PBKY", c.PublicKey)
		}
	}
	return out
}
