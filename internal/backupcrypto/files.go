package backupcrypto

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// sqliteHeader starts every plaintext SQLite file.
var sqliteHeader = []byte("SQLite format 3\x00")

// ErrNotSQLite is wrapped by DecryptManifestDB when the decrypted bytes are not a SQLite
// database: the ManifestKey and the file do not belong together.
var ErrNotSQLite = errors.New("decrypted Manifest.db is not a SQLite database")

// DecryptFile decrypts one file of an encrypted backup: encryptionKey is the MBFile's
// EncryptionKey (LE u32 class + 40-byte wrapped key), src the blob. Memory stays bounded
// whatever the file size. It returns the plaintext length.
func (k *Keys) DecryptFile(dst io.Writer, src io.Reader, encryptionKey []byte) (int64, error) {
	key, err := k.UnwrapKey(encryptionKey)
	if err != nil {
		return 0, err
	}
	defer clear(key)
	return Decrypt(dst, src, key)
}

// EncryptFile is the writing side of DecryptFile: it encrypts src into dst under a new random
// key wrapped with class and returns the EncryptionKey to store in the file's MBFile.
func (k *Keys) EncryptFile(dst io.Writer, src io.Reader, class uint32) (encryptionKey []byte, err error) {
	key, wrapped, err := k.NewFileKey(class)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	if _, err := Encrypt(dst, src, key); err != nil {
		return nil, err
	}
	return wrapped, nil
}

// DecryptManifestDB decrypts the encrypted Manifest.db at src with manifestKey (Manifest.plist's
// ManifestKey) into a new file dst, created 0600 and never overwriting anything. dst should be
// in a private temporary folder, never inside a backup. On failure dst is removed. The result
// is checked to be a SQLite file, which also catches a ManifestKey from another backup.
func (k *Keys) DecryptManifestDB(manifestKey []byte, src, dst string) (err error) {
	key, err := k.UnwrapKey(manifestKey)
	if err != nil {
		return fmt.Errorf("decrypt Manifest.db: %w", err)
	}
	defer clear(key)
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("decrypt Manifest.db: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("decrypt Manifest.db: %w", err)
	}
	defer func() {
		if cerr := out.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("decrypt Manifest.db: %w", cerr)
		}
		if err != nil {
			os.Remove(dst)
		}
	}()
	d, err := NewDecrypter(in, key)
	if err != nil {
		return err
	}
	var head [16]byte
	n, err := io.ReadFull(d, head[:])
	if err != nil || !bytes.Equal(head[:n], sqliteHeader) {
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			return fmt.Errorf("decrypt Manifest.db %s: %w", src, err)
		}
		return fmt.Errorf("decrypt Manifest.db %s: %w", src, ErrNotSQLite)
	}
	if _, err := out.Write(head[:]); err != nil {
		return fmt.Errorf("decrypt Manifest.db: %w", err)
	}
	if _, err := d.WriteTo(out); err != nil {
		return fmt.Errorf("decrypt Manifest.db %s: %w", src, err)
	}
	return nil
}

// EncryptManifestDB encrypts the plaintext Manifest.db at src into a new file dst under a new
// key wrapped with ManifestKeyClass, and returns the ManifestKey for Manifest.plist.
func (k *Keys) EncryptManifestDB(src, dst string) (manifestKey []byte, err error) {
	in, err := os.Open(src)
	if err != nil {
		return nil, fmt.Errorf("encrypt Manifest.db: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("encrypt Manifest.db: %w", err)
	}
	mk, err := k.EncryptFile(out, in, ManifestKeyClass)
	if cerr := out.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		os.Remove(dst)
		return nil, fmt.Errorf("encrypt Manifest.db: %w", err)
	}
	return mk, nil
}

// IsSQLite reports whether the file at path starts with the SQLite header: how readers tell a
// plaintext Manifest.db (unencrypted, or encrypted before iOS 10.2) from an encrypted one.
func IsSQLite(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	var head [16]byte
	n, err := io.ReadFull(f, head[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return false, err
	}
	return bytes.Equal(head[:n], sqliteHeader), nil
}
