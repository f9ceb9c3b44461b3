package backupcrypto

import (
	"crypto/pbkdf2"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrWrongPassword is returned by Unlock and UnlockWithKEK when a password-wrapped class key
// fails its integrity check: the password (or KEK) is not the backup's.
var ErrWrongPassword = errors.New("wrong backup password")

// ErrNoClassKey is wrapped when a wrapped key names a protection class the keybag has no
// usable (password-wrapped) key for.
var ErrNoClassKey = errors.New("no usable key for protection class")

// KEKSize is the size of the key-encryption key derived from the password.
const KEKSize = 32

// WrappedKeySize is the length of a ManifestKey or EncryptionKey: LE u32 class + 40-byte
// RFC 3394-wrapped 32-byte key.
const WrappedKeySize = 4 + 40

// DeriveKEK derives the key-encryption key from password with the bag's parameters
// (backup-format.md §3.2). With DPSL present (iOS ≥ 10.2): PBKDF2-HMAC-SHA256(password, DPSL,
// DPIC, 32), then PBKDF2-HMAC-SHA1 of that with SALT and ITER; otherwise the SHA1 stage
// alone on the password. With real parameters this takes seconds; callers that need the key
// again keep the *Keys (or its KEK) in memory rather than deriving twice.
func DeriveKEK(bag *KeyBag, password []byte) ([]byte, error) {
	if len(bag.Salt) == 0 || bag.Iter == 0 {
		return nil, fmt.Errorf("derive backup key: %w: no SALT/ITER", ErrMalformedKeyBag)
	}
	p := password
	if bag.DoubleKDF() {
		if bag.DPIC == 0 {
			return nil, fmt.Errorf("derive backup key: %w: DPSL without DPIC", ErrMalformedKeyBag)
		}
		k1, err := pbkdf2.Key(sha256.New, string(password), bag.DPSL, int(bag.DPIC), 32)
		if err != nil {
			return nil, fmt.Errorf("derive backup key (SHA-256 stage): %w", err)
		}
		defer clear(k1)
		p = k1
	}
	// pbkdf2.Key takes the password as a string; binary K1 bytes are fine there.
	kek, err := pbkdf2.Key(sha1.New, string(p), bag.Salt, int(bag.Iter), KEKSize)
	if err != nil {
		return nil, fmt.Errorf("derive backup key (SHA-1 stage): %w", err)
	}
	return kek, nil
}

// Keys holds the unlocked keys of one backup: the KEK and every password-wrapped class key.
// It is safe for concurrent use once returned (it is never modified until Destroy).
type Keys struct {
	kek     []byte
	classes map[uint32][]byte
}

// Unlock parses bag (Manifest.plist's BackupKeyBag), derives the KEK from password and
// unwraps every password-wrapped class key. A wrong password gives an error wrapping
// ErrWrongPassword; a bag that cannot be parsed one wrapping ErrMalformedKeyBag.
func Unlock(bag, password []byte) (*Keys, error) {
	kb, err := ParseKeyBag(bag)
	if err != nil {
		return nil, err
	}
	kek, err := DeriveKEK(kb, password)
	if err != nil {
		return nil, err
	}
	k, err := unlock(kb, kek)
	if err != nil {
		clear(kek)
		return nil, err
	}
	return k, nil
}

// UnlockWithKEK is Unlock with an already derived KEK (for example one kept in memory from an
// earlier Unlock, see Keys.KEK), skipping the slow derivation.
func UnlockWithKEK(bag, kek []byte) (*Keys, error) {
	kb, err := ParseKeyBag(bag)
	if err != nil {
		return nil, err
	}
	if len(kek) != KEKSize {
		return nil, fmt.Errorf("unlock backup: KEK is %d bytes, want %d", len(kek), KEKSize)
	}
	return unlock(kb, clone(kek))
}

// unlock takes ownership of kek. Every WRAP&2 record must unwrap: that is the password check
// real readers make (there is no cheaper verifier). Records that are also device-wrapped
// (WRAP 3) unwrap to a still UID-encrypted value that is useless off-device; they are checked
// but not kept, so using such a class later gives ErrNoClassKey instead of garbage.
func unlock(kb *KeyBag, kek []byte) (*Keys, error) {
	k := &Keys{kek: kek, classes: map[uint32][]byte{}}
	checked := 0
	for _, c := range kb.Classes {
		if c.Wrap&WrapPassword == 0 {
			continue
		}
		if c.KeyType != 0 {
			return nil, fmt.Errorf("unlock backup: class %d has key type %d; only AES (0) is supported", c.Class, c.KeyType)
		}
		key, err := Unwrap(kek, c.WrappedKey)
		if errors.Is(err, ErrUnwrapIntegrity) {
			k.Destroy()
			return nil, ErrWrongPassword
		}
		if err != nil {
			k.Destroy()
			return nil, fmt.Errorf("unlock backup: class %d: %w", c.Class, err)
		}
		checked++
		if c.Wrap&WrapDevice != 0 {
			clear(key)
			continue
		}
		k.classes[c.Class] = key
	}
	if checked == 0 {
		k.Destroy()
		return nil, fmt.Errorf("unlock backup: no password-wrapped class keys (is the backup encrypted?)")
	}
	return k, nil
}

// KEK returns a copy of the derived key-encryption key, so a caller can unlock the same
// backup again with UnlockWithKEK without the slow derivation. Keep it in memory only.
func (k *Keys) KEK() []byte { return clone(k.kek) }

// ClassKey returns the unwrapped key of protection class c, or false. The slice belongs to
// the Keys: do not modify it. Device-wrapped classes (WRAP 3) have no usable key.
func (k *Keys) ClassKey(c uint32) ([]byte, bool) {
	key, ok := k.classes[c]
	return key, ok
}

// UnwrapKey unwraps a ManifestKey or a file's EncryptionKey (LE u32 class + 40-byte wrapped
// key) with the key of the class it names. It returns the 32-byte content key.
func (k *Keys) UnwrapKey(wrapped []byte) ([]byte, error) {
	if len(wrapped) != WrappedKeySize {
		return nil, fmt.Errorf("unwrap content key: %d bytes, want %d", len(wrapped), WrappedKeySize)
	}
	class := binary.LittleEndian.Uint32(wrapped[:4])
	ck, ok := k.classes[class]
	if !ok {
		return nil, fmt.Errorf("unwrap content key: %w %d", ErrNoClassKey, class)
	}
	key, err := Unwrap(ck, wrapped[4:])
	if err != nil {
		return nil, fmt.Errorf("unwrap content key (class %d): %w", class, err)
	}
	return key, nil
}

// WrapKey wraps a 32-byte content key with the key of class, giving the 44-byte form stored
// as a ManifestKey or EncryptionKey (the writing side, for the simulated device).
func (k *Keys) WrapKey(class uint32, key []byte) ([]byte, error) {
	ck, ok := k.classes[class]
	if !ok {
		return nil, fmt.Errorf("wrap content key: %w %d", ErrNoClassKey, class)
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("wrap content key: key is %d bytes, want 32", len(key))
	}
	w, err := Wrap(ck, key)
	if err != nil {
		return nil, err
	}
	return append(binary.LittleEndian.AppendUint32(nil, class), w...), nil
}

// NewFileKey returns a fresh random 32-byte content key and its 44-byte wrapped form under
// class.
func (k *Keys) NewFileKey(class uint32) (key, wrapped []byte, err error) {
	key, err = randomBytes(32)
	if err != nil {
		return nil, nil, err
	}
	wrapped, err = k.WrapKey(class, key)
	if err != nil {
		return nil, nil, err
	}
	return key, wrapped, nil
}

// Destroy zeroes the keys. The Keys must not be used afterwards.
func (k *Keys) Destroy() {
	clear(k.kek)
	for c, key := range k.classes {
		clear(key)
		delete(k.classes, c)
	}
}
