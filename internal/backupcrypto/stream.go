package backupcrypto

import (
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"fmt"
	"io"
)

// Content errors, wrapped by the streaming decrypter.
var (
	// ErrCiphertextLength: the ciphertext is not a whole number of AES blocks.
	ErrCiphertextLength = errors.New("ciphertext is not a multiple of the AES block size")
	// ErrBadPadding: the last block does not end in valid PKCS#7 padding, which almost always
	// means a wrong key or a damaged file.
	ErrBadPadding = errors.New("bad PKCS#7 padding")
)

// streamBufSize is the working buffer of one decrypter or encrypter: big enough that syscalls
// and CBC set-up are amortised, small enough that memory stays flat whatever the file size.
const streamBufSize = 64 << 10

// zeroIV is the IV of every Manifest.db and file: iOS uses a fresh key per file instead.
var zeroIV [aes.BlockSize]byte

// Decrypter is a streaming AES-CBC (zero IV) PKCS#7 decrypter. It reads ciphertext from its
// source in fixed-size chunks, always holding back the last block until the source ends so
// the padding can be checked and stripped. A 0-byte ciphertext decrypts to an empty file
// (encrypted backups store empty files that way). Memory use is one 64 KiB buffer.
type Decrypter struct {
	src   io.Reader
	mode  cipher.BlockMode
	buf   []byte
	tail  int // start of the ciphertext carried over to the next fill
	end   int // end of valid bytes in buf
	ready []byte
	err   error
	in    int64
}

// NewDecrypter returns a Decrypter of src under key (32 bytes for backups).
func NewDecrypter(src io.Reader, key []byte) (*Decrypter, error) {
	c, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("decrypt: %w", err)
	}
	return &Decrypter{src: src, mode: cipher.NewCBCDecrypter(c, zeroIV[:]), buf: make([]byte, streamBufSize)}, nil
}

// Read implements io.Reader. After the last plaintext byte it returns io.EOF, or the error
// that ended the stream (ErrBadPadding, ErrCiphertextLength, a read error).
func (d *Decrypter) Read(p []byte) (int, error) {
	for len(d.ready) == 0 {
		if d.err != nil {
			return 0, d.err
		}
		d.fill()
	}
	n := copy(p, d.ready)
	d.ready = d.ready[n:]
	return n, nil
}

// WriteTo implements io.WriterTo, so io.Copy hands out plaintext straight from the decrypter's
// buffer without a second one.
func (d *Decrypter) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		if len(d.ready) > 0 {
			n, err := w.Write(d.ready)
			total += int64(n)
			d.ready = d.ready[n:]
			if err != nil {
				return total, err
			}
			continue
		}
		if d.err == io.EOF {
			return total, nil
		}
		if d.err != nil {
			return total, d.err
		}
		d.fill()
	}
}

func (d *Decrypter) fill() {
	n := copy(d.buf, d.buf[d.tail:d.end])
	d.tail, d.end = 0, n
	m, err := io.ReadFull(d.src, d.buf[n:])
	d.end += m
	d.in += int64(m)
	switch err {
	case nil:
		// The buffer is full (a multiple of the block size): decrypt all but the last block,
		// which may be the padded one.
		usable := d.end - aes.BlockSize
		d.mode.CryptBlocks(d.buf[:usable], d.buf[:usable])
		d.ready, d.tail = d.buf[:usable], usable
	case io.EOF, io.ErrUnexpectedEOF:
		if d.end == 0 {
			d.err = io.EOF // empty ciphertext: empty plaintext
			return
		}
		if d.end%aes.BlockSize != 0 {
			d.err = fmt.Errorf("decrypt: %w (%d bytes)", ErrCiphertextLength, d.in)
			return
		}
		d.mode.CryptBlocks(d.buf[:d.end], d.buf[:d.end])
		pad, perr := pkcs7Pad(d.buf[:d.end])
		if perr != nil {
			d.err = perr
			return
		}
		d.ready, d.tail = d.buf[:d.end-pad], d.end
		d.err = io.EOF
	default:
		d.err = fmt.Errorf("decrypt: read ciphertext: %w", err)
	}
}

// pkcs7Pad returns the padding length of the plaintext b (whose length is a positive multiple
// of the block size).
func pkcs7Pad(b []byte) (int, error) {
	p := int(b[len(b)-1])
	if p == 0 || p > aes.BlockSize {
		return 0, fmt.Errorf("decrypt: %w", ErrBadPadding)
	}
	for _, c := range b[len(b)-p:] {
		if int(c) != p {
			return 0, fmt.Errorf("decrypt: %w", ErrBadPadding)
		}
	}
	return p, nil
}

// Decrypt decrypts all of src into dst with key and returns the plaintext length.
func Decrypt(dst io.Writer, src io.Reader, key []byte) (int64, error) {
	d, err := NewDecrypter(src, key)
	if err != nil {
		return 0, err
	}
	return d.WriteTo(dst)
}

// Encrypter is a streaming AES-CBC (zero IV) PKCS#7 encrypter, the writing side of Decrypter.
// Close writes the final padded block; it does not close the destination. An empty plaintext
// gives one full padding block: backup-format.md leaves open whether iOS writes that or an
// empty blob for empty files, and readers must accept both.
type Encrypter struct {
	dst    io.Writer
	mode   cipher.BlockMode
	buf    []byte
	n      int
	closed bool
	err    error
}

// NewEncrypter returns an Encrypter writing ciphertext to dst under key.
func NewEncrypter(dst io.Writer, key []byte) (*Encrypter, error) {
	c, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("encrypt: %w", err)
	}
	return &Encrypter{dst: dst, mode: cipher.NewCBCEncrypter(c, zeroIV[:]), buf: make([]byte, streamBufSize)}, nil
}

// Write implements io.Writer.
func (e *Encrypter) Write(p []byte) (int, error) {
	if e.closed {
		return 0, errors.New("encrypt: write after close")
	}
	if e.err != nil {
		return 0, e.err
	}
	written := 0
	for len(p) > 0 {
		c := copy(e.buf[e.n:], p)
		e.n += c
		p = p[c:]
		written += c
		if e.n == len(e.buf) {
			if err := e.flush(e.n); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

func (e *Encrypter) flush(n int) error {
	e.mode.CryptBlocks(e.buf[:n], e.buf[:n])
	if _, err := e.dst.Write(e.buf[:n]); err != nil {
		e.err = fmt.Errorf("encrypt: write ciphertext: %w", err)
		return e.err
	}
	e.n = copy(e.buf, e.buf[n:e.n])
	return nil
}

// Close pads and writes the last block.
func (e *Encrypter) Close() error {
	if e.closed {
		return e.err
	}
	e.closed = true
	if e.err != nil {
		return e.err
	}
	// The buffer never stays full after Write, so there is always room for the padding.
	p := aes.BlockSize - e.n%aes.BlockSize
	for i := 0; i < p; i++ {
		e.buf[e.n+i] = byte(p)
	}
	e.n += p
	return e.flush(e.n)
}

// ReadFrom implements io.ReaderFrom: plaintext is read straight into the encrypter's buffer.
func (e *Encrypter) ReadFrom(r io.Reader) (int64, error) {
	if e.closed {
		return 0, errors.New("encrypt: write after close")
	}
	var total int64
	for e.err == nil {
		m, err := r.Read(e.buf[e.n:])
		e.n += m
		total += int64(m)
		if e.n == len(e.buf) {
			if ferr := e.flush(e.n); ferr != nil {
				return total, ferr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
	return total, e.err
}

// Encrypt encrypts all of src into dst with key and returns the ciphertext length.
func Encrypt(dst io.Writer, src io.Reader, key []byte) (int64, error) {
	e, err := NewEncrypter(dst, key)
	if err != nil {
		return 0, err
	}
	n, err := e.ReadFrom(src)
	if err != nil {
		return 0, err
	}
	if err := e.Close(); err != nil {
		return 0, err
	}
	return n + int64(aes.BlockSize) - n%aes.BlockSize, nil
}

// EncryptReader is the pull form of Encrypter: reading from it yields the AES-CBC (zero IV)
// PKCS#7 ciphertext of its source, for producers that hand a reader on (the simulated
// device streaming blobs to a host). Memory use is one 64 KiB buffer.
type EncryptReader struct {
	src  io.Reader
	mode cipher.BlockMode
	buf  []byte
	out  []byte
	done bool
	err  error
}

// NewEncryptReader returns an EncryptReader of src under key.
func NewEncryptReader(src io.Reader, key []byte) (*EncryptReader, error) {
	c, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("encrypt: %w", err)
	}
	return &EncryptReader{src: src, mode: cipher.NewCBCEncrypter(c, zeroIV[:]), buf: make([]byte, streamBufSize+aes.BlockSize)}, nil
}

// Read implements io.Reader.
func (e *EncryptReader) Read(p []byte) (int, error) {
	for len(e.out) == 0 {
		if e.err != nil {
			return 0, e.err
		}
		if e.done {
			return 0, io.EOF
		}
		n, err := io.ReadFull(e.src, e.buf[:streamBufSize])
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
			e.err = fmt.Errorf("encrypt: read plaintext: %w", err)
			return 0, e.err
		}
		e.mode.CryptBlocks(e.buf[:n], e.buf[:n])
		e.out = e.buf[:n]
	}
	k := copy(p, e.out)
	e.out = e.out[k:]
	return k, nil
}
