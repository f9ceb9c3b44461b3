package backupsim

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"os"

	"snapback/internal/backupcrypto"
)

// Encrypted backups (Options.Password): the device keeps one BackupKeyBag for its lifetime
// (persisted in StateDir), as a real device does, because blobs the host already holds stay
// valid only while their keys are wrapped with the same class keys. Per-file keys are derived
// from (seed, file, version), and RFC 3394 wrapping and AES-CBC with a zero IV are
// deterministic, so an unchanged file has the same EncryptionKey and the same ciphertext in
// every backup and nothing per file needs to be stored.

// setupCrypto creates or unlocks the device's keybag. A setting recorded by ChangePassword
// wins: off, or on with the recorded keybag and KEK. Otherwise Options.Password decides; a
// bag that no longer opens with it (the password changed) is replaced, and the remembered
// backup UUID is dropped so the next backup is full.
func (d *Device) setupCrypto() error {
	switch d.encState {
	case encOff:
		d.bag, d.keys = nil, nil
		return nil
	case encOn:
		keys, err := backupcrypto.UnlockWithKEK(d.bag, d.kek)
		if err != nil {
			return fmt.Errorf("backupsim: state %s: the recorded keybag does not unlock: %w", stateFile, err)
		}
		d.keys = keys
		return nil
	}
	if d.opts.Password == "" {
		d.bag, d.keys = nil, nil
		return nil
	}
	if d.bag != nil {
		keys, err := backupcrypto.Unlock(d.bag, []byte(d.opts.Password))
		if err == nil {
			d.keys = keys
			return nil
		}
	}
	bag, keys, err := backupcrypto.NewBackupKeyBag([]byte(d.opts.Password), backupcrypto.BagOptions{DPIC: d.opts.KDFRounds})
	if err != nil {
		return fmt.Errorf("backupsim: keybag: %w", err)
	}
	d.bag, d.keys, d.lastUUID, d.last = bag, keys, "", nil
	return d.saveLocked()
}

// fileKey is the content key of item i at version v.
func (d *Device) fileKey(i int, v uint32) []byte {
	h := sha256.New()
	var b [8 + 8 + 4]byte
	binary.BigEndian.PutUint64(b[0:], uint64(d.opts.Seed))
	binary.BigEndian.PutUint64(b[8:], uint64(i))
	binary.BigEndian.PutUint32(b[16:], v)
	h.Write([]byte("backupsim file key"))
	h.Write(b[:])
	return h.Sum(nil)
}

// encryptionKey is the MBFile EncryptionKey of item i at version v (LE class + wrapped key).
func (d *Device) encryptionKey(i int, v uint32, class int64) ([]byte, error) {
	return d.keys.WrapKey(uint32(class), d.fileKey(i, v))
}

// blobSize is the stored size of a file of size n: AES-CBC with PKCS#7 always adds 1–16
// bytes when encrypting.
func (d *Device) blobSize(n int64) int64 {
	if d.keys == nil {
		return n
	}
	return n + aes.BlockSize - n%aes.BlockSize
}

// blob returns the stored bytes of item i at version v: the content, encrypted when the
// device encrypts.
func (d *Device) blob(i int, v uint32, size int64) io.Reader {
	r := d.content(i, v, size)
	if d.keys == nil {
		return r
	}
	c, err := aes.NewCipher(d.fileKey(i, v))
	if err != nil {
		panic(err) // a 32-byte key is always valid
	}
	return &encReader{src: r, mode: cipher.NewCBCEncrypter(c, make([]byte, aes.BlockSize))}
}

// encReader encrypts src with AES-CBC and PKCS#7 padding as it is read.
type encReader struct {
	src  io.Reader
	mode cipher.BlockMode
	buf  []byte
	out  []byte
	done bool
}

func (e *encReader) Read(p []byte) (int, error) {
	for len(e.out) == 0 {
		if e.done {
			return 0, io.EOF
		}
		if e.buf == nil {
			e.buf = make([]byte, 32<<10+aes.BlockSize)
		}
		n, err := io.ReadFull(e.src, e.buf[:32<<10])
		switch err {
		case nil:
		case io.EOF, io.ErrUnexpectedEOF:
			pad := aes.BlockSize - n%aes.BlockSize
			for j := 0; j < pad; j++ {
				e.buf[n+j] = byte(pad)
			}
			n += pad
			e.done = true
		default:
			return 0, err
		}
		e.mode.CryptBlocks(e.buf[:n], e.buf[:n])
		e.out = e.buf[:n]
	}
	k := copy(p, e.out)
	e.out = e.out[k:]
	return k, nil
}

// encryptManifestDB encrypts the generated Manifest.db at plain into enc under a fresh key
// and returns the ManifestKey for Manifest.plist.
func (d *Device) encryptManifestDB(plain, enc string) ([]byte, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("manifest key: %w", err)
	}
	in, err := os.Open(plain)
	if err != nil {
		return nil, fmt.Errorf("encrypt Manifest.db: %w", err)
	}
	defer in.Close()
	out, err := os.Create(enc)
	if err != nil {
		return nil, fmt.Errorf("encrypt Manifest.db: %w", err)
	}
	if _, err := backupcrypto.Encrypt(out, in, key); err != nil {
		out.Close()
		return nil, err
	}
	if err := out.Close(); err != nil {
		return nil, fmt.Errorf("encrypt Manifest.db: %w", err)
	}
	return d.keys.WrapKey(backupcrypto.ManifestKeyClass, key)
}

// openHostDB turns a Manifest.db downloaded from the host into a plaintext file the device
// can read: as is for unencrypted backups, decrypted when the host's Manifest.plist says
// it is encrypted with this device's keybag. ok is false when the device cannot use it.
func (d *Device) openHostDB(m hostManifest, path, scratch string) (string, bool) {
	if m.IsEncrypted != (d.keys != nil) {
		return "", false // encryption was switched since: nothing carries over
	}
	if d.keys == nil {
		return path, true
	}
	if !bytes.Equal(m.BackupKeyBag, d.bag) {
		return "", false
	}
	plain := path + ".plain"
	if err := d.keys.DecryptManifestDB(m.ManifestKey, path, plain); err != nil {
		return "", false
	}
	return plain, true
}

// hostManifest is what the device needs from a host's Manifest.plist.
type hostManifest struct {
	IsEncrypted  bool
	BackupKeyBag []byte
	ManifestKey  []byte
}
