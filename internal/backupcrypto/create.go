package backupcrypto

import (
	"crypto/rand"
	"fmt"
)

// Real derivation parameters of iOS ≥ 10.2 backups.
const (
	DefaultDPIC = 10_000_000
	DefaultIter = 10_000
)

// BagOptions configure NewBackupKeyBag. Zero fields take the real defaults; tests pass small
// round counts so a bag is made and unlocked in milliseconds (readers take the counts from
// the bag, so such backups stay valid).
type BagOptions struct {
	DPIC int // PBKDF2-HMAC-SHA256 rounds; default DefaultDPIC
	Iter int // PBKDF2-HMAC-SHA1 rounds; default DefaultIter
}

// ManifestKeyClass is the protection class Manifest.db's key is wrapped with on real devices.
const ManifestKeyClass = 4

// classWrap is each class's WRAP in real encrypted backups (backup-format.md §3.1, §4):
// 3 (device and password) for class 5 and the ThisDeviceOnly keychain classes, 2 otherwise.
func classWrap(class uint32) uint32 {
	switch class {
	case 5, 9, 10, 11:
		return WrapDevice | WrapPassword
	}
	return WrapPassword
}

// NewBackupKeyBag makes a new BackupKeyBag for an encrypted backup protected by password,
// shaped like a real iOS ≥ 10.2 one: VERS 5, TYPE 1, random UUIDs, SALT and DPSL, zero HMCK,
// DPWT 1, and class records 11 → 1 with AES class keys wrapped under the KEK (1,388 bytes).
// It returns the encoded bag and the unlocked Keys, which wrap Manifest.db and file keys.
// Classes 5, 9, 10 and 11 are device-wrapped on real devices, so their keys are random
// stand-ins that no one can use, exactly as off-device readers see them.
func NewBackupKeyBag(password []byte, opts BagOptions) ([]byte, *Keys, error) {
	if opts.DPIC <= 0 {
		opts.DPIC = DefaultDPIC
	}
	if opts.Iter <= 0 {
		opts.Iter = DefaultIter
	}
	if opts.DPIC > MaxRounds || opts.Iter > MaxRounds {
		return nil, nil, fmt.Errorf("new keybag: rounds above %d", MaxRounds)
	}
	kb := &KeyBag{Version: 5, Type: 1, HMCK: make([]byte, 40), Iter: uint32(opts.Iter), DPWT: 1, DPIC: uint32(opts.DPIC)}
	var err error
	if kb.UUID, err = randomBytes(16); err != nil {
		return nil, nil, err
	}
	if kb.Salt, err = randomBytes(20); err != nil {
		return nil, nil, err
	}
	if kb.DPSL, err = randomBytes(20); err != nil {
		return nil, nil, err
	}
	kek, err := DeriveKEK(kb, password)
	if err != nil {
		return nil, nil, err
	}
	keys := &Keys{kek: kek, classes: map[uint32][]byte{}}
	for class := uint32(11); class >= 1; class-- {
		id, err := randomBytes(16)
		if err != nil {
			return nil, nil, err
		}
		key, err := randomBytes(32)
		if err != nil {
			return nil, nil, err
		}
		wrapped, err := Wrap(kek, key)
		if err != nil {
			return nil, nil, err
		}
		wrap := classWrap(class)
		kb.Classes = append(kb.Classes, ClassKey{UUID: id, Class: class, Wrap: wrap, WrappedKey: wrapped})
		if wrap&WrapDevice == 0 {
			keys.classes[class] = key
		}
	}
	return kb.Marshal(), keys, nil
}

func randomBytes(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("random bytes: %w", err)
	}
	return b, nil
}
