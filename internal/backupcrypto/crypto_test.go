package backupcrypto

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testRounds keep bag creation and unlocking in tests to milliseconds.
var testRounds = BagOptions{DPIC: 10, Iter: 10}

func TestKeyWrapRFC3394(t *testing.T) {
	cases := []struct{ name, kek, key, wrapped string }{
		// RFC 3394 §4.1: 128-bit KEK, 128-bit key data.
		{"4.1", "000102030405060708090A0B0C0D0E0F", "00112233445566778899AABBCCDDEEFF",
			"1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5"},
		// RFC 3394 §4.6: 256-bit KEK, 256-bit key data (the shape backups use).
		{"4.6", "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F",
			"00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F",
			"28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			kek, key, want := unhex(t, c.kek), unhex(t, c.key), unhex(t, c.wrapped)
			got, err := Wrap(kek, key)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("Wrap = %X; want %X", got, want)
			}
			back, err := Unwrap(kek, want)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(back, key) {
				t.Errorf("Unwrap = %X; want %X", back, key)
			}
			bad := bytes.Clone(want)
			bad[len(bad)-1] ^= 1
			if _, err := Unwrap(kek, bad); !errors.Is(err, ErrUnwrapIntegrity) {
				t.Errorf("Unwrap(tampered) error = %v; want ErrUnwrapIntegrity", err)
			}
		})
	}
	if _, err := Unwrap(make([]byte, 32), make([]byte, 20)); err == nil {
		t.Error("Unwrap of 20 bytes succeeded")
	}
	if _, err := Wrap(make([]byte, 32), make([]byte, 12)); err == nil {
		t.Error("Wrap of 12 bytes succeeded")
	}
}

// hashcatBag turns a hashcat mode 14800 hash ($itunes_backup$*10*WPKY*ITER*SALT*DPIC*DPSL)
// into a one-class keybag, as those vectors describe exactly one password-wrapped class key.
func hashcatBag(t *testing.T, h string) []byte {
	t.Helper()
	f := strings.Split(strings.TrimPrefix(h, "$itunes_backup$*"), "*")
	if len(f) != 6 || f[0] != "10" {
		t.Fatalf("bad hashcat hash %q", h)
	}
	iter, _ := strconv.Atoi(f[2])
	dpic, _ := strconv.Atoi(f[4])
	kb := &KeyBag{Version: 5, Type: 1, UUID: make([]byte, 16), Salt: unhex(t, f[3]), Iter: uint32(iter),
		DPWT: 1, DPIC: uint32(dpic), DPSL: unhex(t, f[5]),
		Classes: []ClassKey{{UUID: make([]byte, 16), Class: 1, Wrap: WrapPassword, WrappedKey: unhex(t, f[1])}}}
	return kb.Marshal()
}

const (
	hashcatSelfTest = "$itunes_backup$*10*17a3b858e79bc273be43a9f113b71efe7ec8e7e401396b350180b4592ef45db67ffef7b2d64329a5*10000*2721336781705041205314422175267631184867*1000*99fafc983e732998adb9fadc162a2e382143f115"
	hashcatExample  = "$itunes_backup$*10*8b715f516ff8e64442c478c2d9abb046fc6979ab079007d3dbcef3ddd84217f4c3db01362d88fa68*10000*2353363784073608264337337723324886300850*10000000*425b4bb4e200b5fd4c66979c9caca31716052063"
)

func TestHashcatVectorDPIC1000(t *testing.T) {
	bag := hashcatBag(t, hashcatSelfTest)
	k, err := Unlock(bag, []byte("hashcat"))
	if err != nil {
		t.Fatalf("Unlock(hashcat) = %v", err)
	}
	if key, ok := k.ClassKey(1); !ok || len(key) != 32 {
		t.Errorf("class 1 key = %x, %v; want 32 bytes", key, ok)
	}
	// The cached KEK unlocks without the derivation.
	if _, err := UnlockWithKEK(bag, k.KEK()); err != nil {
		t.Errorf("UnlockWithKEK = %v", err)
	}
	if _, err := Unlock(bag, []byte("hashcaT")); !errors.Is(err, ErrWrongPassword) {
		t.Errorf("Unlock(wrong) error = %v; want ErrWrongPassword", err)
	}
}

// TestHashcatVectorRealRounds runs the real 10,000,000-round derivation once (a few seconds).
func TestHashcatVectorRealRounds(t *testing.T) {
	if testing.Short() {
		t.Skip("10M-round KDF skipped in -short")
	}
	bag := hashcatBag(t, hashcatExample)
	k, err := Unlock(bag, []byte("hashcat"))
	if err != nil {
		t.Fatalf("Unlock(hashcat) = %v", err)
	}
	// A wrong password must fail on the same KEK path; reuse the derived KEK flipped
	// rather than paying another 10M rounds.
	kek := k.KEK()
	kek[0] ^= 1
	if _, err := UnlockWithKEK(bag, kek); !errors.Is(err, ErrWrongPassword) {
		t.Errorf("UnlockWithKEK(wrong KEK) error = %v; want ErrWrongPassword", err)
	}
}

func TestSingleKDFBag(t *testing.T) {
	// Pre-10.2 bags have no DPSL: KEK = PBKDF2-SHA1(password, SALT, ITER).
	kek := make([]byte, 32)
	kb := &KeyBag{Version: 3, Type: 1, UUID: make([]byte, 16), Salt: bytes.Repeat([]byte{7}, 20), Iter: 5}
	derived, err := DeriveKEK(kb, []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	copy(kek, derived)
	key := bytes.Repeat([]byte{0x42}, 32)
	w, _ := Wrap(kek, key)
	kb.Classes = []ClassKey{{UUID: make([]byte, 16), Class: 3, Wrap: WrapPassword, WrappedKey: w}}
	k, err := Unlock(kb.Marshal(), []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := k.ClassKey(3); !bytes.Equal(got, key) {
		t.Errorf("class 3 key = %x; want %x", got, key)
	}
	if _, err := Unlock(kb.Marshal(), []byte("px")); !errors.Is(err, ErrWrongPassword) {
		t.Errorf("wrong password error = %v", err)
	}
}

func TestNewBackupKeyBagShape(t *testing.T) {
	bag, keys, err := NewBackupKeyBag([]byte("secret"), testRounds)
	if err != nil {
		t.Fatal(err)
	}
	if len(bag) != 1388 {
		t.Errorf("bag is %d bytes; want 1388 like a real one", len(bag))
	}
	kb, err := ParseKeyBag(bag)
	if err != nil {
		t.Fatal(err)
	}
	if kb.Version != 5 || kb.Type != 1 || kb.DPWT != 1 || kb.DPIC != 10 || kb.Iter != 10 || len(kb.Salt) != 20 || len(kb.DPSL) != 20 {
		t.Errorf("header = %+v", kb)
	}
	if len(kb.Classes) != 11 {
		t.Fatalf("%d classes; want 11", len(kb.Classes))
	}
	for i, c := range kb.Classes {
		wantClass := uint32(11 - i)
		want := uint32(WrapPassword)
		if wantClass == 5 || wantClass >= 9 {
			want = WrapDevice | WrapPassword
		}
		if c.Class != wantClass || c.Wrap != want || c.KeyType != 0 || len(c.WrappedKey) != 40 {
			t.Errorf("record %d = class %d wrap %d ktyp %d wpky %d; want class %d wrap %d", i, c.Class, c.Wrap, c.KeyType, len(c.WrappedKey), wantClass, want)
		}
	}
	// Same bag, same password: the reader gets the writer's class keys.
	k2, err := Unlock(bag, []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	for _, class := range []uint32{1, 2, 3, 4, 6, 7, 8} {
		a, _ := keys.ClassKey(class)
		b, ok := k2.ClassKey(class)
		if !ok || !bytes.Equal(a, b) {
			t.Errorf("class %d key differs after unlock", class)
		}
	}
	if _, ok := k2.ClassKey(10); ok {
		t.Error("device-wrapped class 10 has a usable key")
	}
	if _, err := Unlock(bag, []byte("Secret")); !errors.Is(err, ErrWrongPassword) {
		t.Errorf("wrong password error = %v; want ErrWrongPassword", err)
	}
	// Two bags never share salts or UUIDs.
	bag2, _, _ := NewBackupKeyBag([]byte("secret"), testRounds)
	kb2, _ := ParseKeyBag(bag2)
	if bytes.Equal(kb.Salt, kb2.Salt) || bytes.Equal(kb.DPSL, kb2.DPSL) || bytes.Equal(kb.UUID, kb2.UUID) {
		t.Error("two new bags share random fields")
	}
}

func TestParseKeyBagMalformed(t *testing.T) {
	good, _, err := NewBackupKeyBag([]byte("x"), testRounds)
	if err != nil {
		t.Fatal(err)
	}
	tlv := func(tag string, v []byte) []byte {
		return append(binary.BigEndian.AppendUint32([]byte(tag), uint32(len(v))), v...)
	}
	u := func(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }
	header := append(tlv("UUID", make([]byte, 16)), tlv("SALT", make([]byte, 20))...)
	cases := map[string][]byte{
		"empty":            nil,
		"truncated header": good[:5],
		"truncated value":  good[:len(good)-3],
		"length overflow":  append(tlv("VERS", u(5))[:4], 0xff, 0xff, 0xff, 0xff),
		"short UUID":       tlv("UUID", make([]byte, 15)),
		"no classes":       header,
		"VERS 3 bytes":     append(tlv("VERS", []byte{0, 0, 5}), header...),
		"ITER zero":        append(header, tlv("ITER", u(0))...),
		"DPIC huge":        append(header, tlv("DPIC", u(4_000_000_000))...),
		"WPKY 41 bytes":    append(header, append(tlv("UUID", make([]byte, 16)), tlv("WPKY", make([]byte, 41))...)...),
		"class without CLAS": append(header, append(tlv("UUID", make([]byte, 16)),
			tlv("WPKY", make([]byte, 40))...)...),
		"password-wrapped without WPKY": append(header, append(tlv("UUID", make([]byte, 16)),
			append(tlv("CLAS", u(1)), tlv("WRAP", u(2))...)...)...),
		"duplicate SALT": append(header, tlv("SALT", make([]byte, 20))...),
		"too big":        make([]byte, maxKeyBagSize+1),
	}
	for name, b := range cases {
		if _, err := ParseKeyBag(b); !errors.Is(err, ErrMalformedKeyBag) {
			t.Errorf("%s: error = %v; want ErrMalformedKeyBag", name, err)
		}
		if _, err := Unlock(b, []byte("x")); !errors.Is(err, ErrMalformedKeyBag) {
			t.Errorf("%s: Unlock error = %v; want ErrMalformedKeyBag", name, err)
		}
	}
}

func encryptBytes(t testing.TB, key, plain []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	n, err := Encrypt(&buf, bytes.NewReader(plain), key)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(buf.Len()) {
		t.Fatalf("Encrypt returned %d; wrote %d", n, buf.Len())
	}
	return buf.Bytes()
}

func TestStreamRoundTripSizes(t *testing.T) {
	key := bytes.Repeat([]byte{9}, 32)
	for _, size := range []int{0, 1, 15, 16, 17, 32, streamBufSize - 1, streamBufSize, streamBufSize + 1, 3*streamBufSize + 5} {
		plain := make([]byte, size)
		rand.Read(plain)
		ct := encryptBytes(t, key, plain)
		if len(ct) != (size/16+1)*16 {
			t.Errorf("size %d: ciphertext %d bytes; want %d (PKCS#7 always pads)", size, len(ct), (size/16+1)*16)
		}
		// Read in odd-sized pieces to exercise the Reader path, not just WriteTo.
		d, _ := NewDecrypter(bytes.NewReader(ct), key)
		var got []byte
		p := make([]byte, 777)
		for {
			n, err := d.Read(p)
			got = append(got, p[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("size %d: %v", size, err)
			}
		}
		if !bytes.Equal(got, plain) {
			t.Errorf("size %d: round trip differs", size)
		}
		// The pull form gives the same bytes as the push form.
		er, _ := NewEncryptReader(bytes.NewReader(plain), key)
		if pulled, err := io.ReadAll(er); err != nil || !bytes.Equal(pulled, ct) {
			t.Errorf("size %d: EncryptReader differs from Encrypt (%v)", size, err)
		}
	}
}

func TestDecryptEdgeCases(t *testing.T) {
	key := bytes.Repeat([]byte{1}, 32)
	var out bytes.Buffer
	if n, err := Decrypt(&out, bytes.NewReader(nil), key); err != nil || n != 0 {
		t.Errorf("empty ciphertext = %d, %v; want 0, nil", n, err)
	}
	if _, err := Decrypt(io.Discard, bytes.NewReader(make([]byte, 20)), key); !errors.Is(err, ErrCiphertextLength) {
		t.Errorf("20-byte ciphertext error = %v; want ErrCiphertextLength", err)
	}
	ct := encryptBytes(t, key, []byte("hello, world"))
	wrong := bytes.Repeat([]byte{2}, 32)
	if _, err := Decrypt(io.Discard, bytes.NewReader(ct), wrong); !errors.Is(err, ErrBadPadding) {
		t.Errorf("wrong key error = %v; want ErrBadPadding", err)
	}
	// A zero IV and a fixed key make the ciphertext deterministic: check one real block
	// against crypto/cipher so Encrypt is CBC with PKCS#7, not just self-consistent.
	plain := append(bytes.Repeat([]byte{'a'}, 16), bytes.Repeat([]byte{16}, 16)...)
	want := make([]byte, 32)
	c, _ := aes.NewCipher(key)
	cipher.NewCBCEncrypter(c, make([]byte, 16)).CryptBlocks(want, plain)
	if got := encryptBytes(t, key, plain[:16]); !bytes.Equal(got, want) {
		t.Errorf("Encrypt(16×'a') = %x; want %x", got, want)
	}
}

func TestRoundTripBackupKeys(t *testing.T) {
	bag, writer, err := NewBackupKeyBag([]byte("pässword"), testRounds)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// A fake "SQLite" file: the header is what DecryptManifestDB checks.
	plainDB := append([]byte("SQLite format 3\x00"), bytes.Repeat([]byte("rows"), 10000)...)
	src := filepath.Join(dir, "plain.db")
	os.WriteFile(src, plainDB, 0o600)
	enc := filepath.Join(dir, "Manifest.db")
	mk, err := writer.EncryptManifestDB(src, enc)
	if err != nil {
		t.Fatal(err)
	}
	if len(mk) != 44 || binary.LittleEndian.Uint32(mk) != 4 {
		t.Errorf("ManifestKey = %x; want 44 bytes, class 4", mk)
	}
	content := []byte("the file's content")
	var blob bytes.Buffer
	ek, err := writer.EncryptFile(&blob, bytes.NewReader(content), 3)
	if err != nil {
		t.Fatal(err)
	}

	reader, err := Unlock(bag, []byte("pässword"))
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "dec.db")
	if err := reader.DecryptManifestDB(mk, enc, dst); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, plainDB) {
		t.Error("decrypted Manifest.db differs")
	}
	if fi, _ := os.Stat(dst); fi.Mode().Perm() != 0o600 {
		t.Errorf("decrypted Manifest.db mode %v; want 0600", fi.Mode().Perm())
	}
	// Never overwrites.
	if err := reader.DecryptManifestDB(mk, enc, dst); err == nil {
		t.Error("DecryptManifestDB overwrote an existing file")
	}
	var out bytes.Buffer
	if _, err := reader.DecryptFile(&out, bytes.NewReader(blob.Bytes()), ek); err != nil || !bytes.Equal(out.Bytes(), content) {
		t.Errorf("DecryptFile = %q, %v; want %q", out.Bytes(), err, content)
	}
	// A file key wrapped with another class does not unwrap.
	badKey := bytes.Clone(ek)
	binary.LittleEndian.PutUint32(badKey, 1)
	if _, err := reader.DecryptFile(io.Discard, bytes.NewReader(blob.Bytes()), badKey); !errors.Is(err, ErrUnwrapIntegrity) {
		t.Errorf("wrong class error = %v; want ErrUnwrapIntegrity", err)
	}
	binary.LittleEndian.PutUint32(badKey, 11)
	if _, err := reader.DecryptFile(io.Discard, bytes.NewReader(blob.Bytes()), badKey); !errors.Is(err, ErrNoClassKey) {
		t.Errorf("device-wrapped class error = %v; want ErrNoClassKey", err)
	}
	// A Manifest.db encrypted with another key is refused and leaves no file behind.
	other := filepath.Join(dir, "other.db")
	mk2 := bytes.Clone(ek) // a valid key of this bag, but not Manifest.db's
	if err := reader.DecryptManifestDB(mk2, enc, other); err == nil {
		t.Error("DecryptManifestDB with the wrong key succeeded")
	}
	if _, err := os.Stat(other); !os.IsNotExist(err) {
		t.Errorf("failed decryption left %s behind", other)
	}
	reader.Destroy()
	if _, ok := reader.ClassKey(1); ok {
		t.Error("Destroy left class keys")
	}
}

// TestStreamingBoundedMemory decrypts 32 MiB and checks memory does not grow with the file:
// a fixed number of allocations and far less allocated than the file size.
func TestStreamingBoundedMemory(t *testing.T) {
	key := bytes.Repeat([]byte{5}, 32)
	plain := make([]byte, 32<<20)
	rand.Read(plain)
	ct := encryptBytes(t, key, plain)
	allocs := testing.AllocsPerRun(3, func() {
		if _, err := Decrypt(io.Discard, bytes.NewReader(ct), key); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 10 {
		t.Errorf("decrypting 32 MiB made %.0f allocations; want a constant few", allocs)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	h := newHashWriter()
	if _, err := Decrypt(h, bytes.NewReader(ct), key); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Errorf("decrypting 32 MiB allocated %d bytes; want < 1 MiB", grew)
	}
	if !bytes.Equal(h.sum(), newHashOf(plain)) {
		t.Error("decrypted content differs")
	}
}
