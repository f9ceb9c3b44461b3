// Package browse reads an Apple-format backup folder (the <UDID> folder), plain or encrypted:
// it lists Manifest.db rows, extracts files as real files with their domain/relative paths and
// modification times, and exports the Camera Roll.
//
// A backup folder is only ever read. Manifest.db is opened read-only and immutable; for an
// encrypted backup it is decrypted into a private temporary folder that Close removes, and
// output folders inside the backup folder are refused, so no decrypted byte lands in a backup.
// Manifest.db content comes from the device and is treated as hostile: paths that are absolute,
// contain "..", or would otherwise leave the output folder are refused, and all writes go
// through an os.Root of the output folder.
package browse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"snapback/internal/backupcrypto"
	"snapback/internal/backupfmt"
)

// Errors callers branch on. A wrong password is backupcrypto.ErrWrongPassword (wrapped).
var (
	// ErrPasswordRequired: the backup is encrypted and Options.Password is nil.
	ErrPasswordRequired = errors.New("backup is encrypted: a password is required")
	// ErrUnsafePath is wrapped when Manifest.db names a path that would escape the output
	// folder; those rows are skipped, and Extract reports them at the end.
	ErrUnsafePath = errors.New("unsafe path in Manifest.db")
	// ErrInsideBackup: an output or temporary folder lies inside the backup folder.
	ErrInsideBackup = errors.New("folder is inside the backup folder")
	// ErrExists: an output file exists and ExtractOptions.Overwrite is false.
	ErrExists = errors.New("output file exists")
	// ErrDamagedRow is wrapped when Manifest.db rows did not decode; those rows are skipped
	// and reported, the rest is read.
	ErrDamagedRow = errors.New("damaged Manifest.db row")
)

// Options configure Open.
type Options struct {
	// Password supplies the backup password; it is called at most once, and only for an
	// encrypted backup. The returned slice is zeroed after use. The CLI reads it from the
	// terminal or the OS keychain; it is never taken from arguments, environment or files.
	Password func() ([]byte, error)
	// KEK, when set, is a key-encryption key kept in memory from an earlier open of the same
	// device's backups (Backup.KEK). It skips the slow password derivation; if it no longer
	// fits (the password changed), Password is asked as usual.
	KEK []byte
	// TempDir is the parent of the private (0700) folder that holds the decrypted Manifest.db
	// while the Backup is open; default os.TempDir(). It must not be inside the backup.
	TempDir string
}

// Backup is an open backup folder. It is not safe for concurrent use.
type Backup struct {
	bad      []string // undecodable rows seen by List and Extract
	dir      string
	manifest backupfmt.Manifest
	keys     *backupcrypto.Keys
	db       *backupfmt.ManifestDB
	tmp      string // private folder of the decrypted Manifest.db; "" for plain backups
	warnings []string
}

// Warnings says what is unusual about the folder (no Manifest.plist or Status.plist: a
// forensic copy rather than a backup a device wrote). Reading never writes to the folder.
func (b *Backup) Warnings() []string { return b.warnings }

// Open opens the backup folder dir. For an encrypted backup it asks opts.Password for the
// password, unlocks the keybag (seconds with real parameters) and decrypts Manifest.db into a
// private temporary folder. Close releases everything.
func Open(ctx context.Context, dir string, opts Options) (_ *Backup, err error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("open backup %s: %w", dir, err)
	}
	m, err := backupfmt.ReadManifest(filepath.Join(abs, backupfmt.ManifestPlistName))
	var warnings []string
	if errors.Is(err, fs.ErrNotExist) {
		// Forensic copies of backups (mvt's test artifacts, files pulled from a device dump)
		// often keep only Manifest.db and the blobs. A plain Manifest.db is enough to read
		// them; without Manifest.plist nothing says whether the backup is complete.
		if plain, perr := backupcrypto.IsSQLite(filepath.Join(abs, backupfmt.ManifestDBName)); perr != nil || !plain {
			return nil, fmt.Errorf("open backup %s: not a backup folder (no %s; give the <UDID> folder itself): %w", dir, backupfmt.ManifestPlistName, err)
		}
		warnings = append(warnings, fmt.Sprintf("%s has no %s: reading its Manifest.db as an unencrypted backup; it may be incomplete", dir, backupfmt.ManifestPlistName))
		m, err = backupfmt.Manifest{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open backup %s: %w", dir, err)
	}
	if _, serr := os.Stat(filepath.Join(abs, backupfmt.StatusPlistName)); errors.Is(serr, fs.ErrNotExist) {
		warnings = append(warnings, fmt.Sprintf("%s has no %s: nothing says the backup finished", dir, backupfmt.StatusPlistName))
	}
	b := &Backup{dir: abs, manifest: m, warnings: warnings}
	defer func() {
		if err != nil {
			b.Close()
		}
	}()
	dbPath := filepath.Join(abs, backupfmt.ManifestDBName)
	plainDB, err := backupcrypto.IsSQLite(dbPath)
	if err != nil {
		return nil, fmt.Errorf("open backup %s: %w", dir, err)
	}
	if m.IsEncrypted {
		if err := b.unlock(ctx, opts); err != nil {
			return nil, err
		}
		// Before iOS 10.2 only the files were encrypted; Manifest.db stayed plain.
		if !plainDB {
			if dbPath, err = b.decryptManifest(dbPath, opts.TempDir); err != nil {
				return nil, err
			}
		}
	} else if !plainDB {
		return nil, fmt.Errorf("open backup %s: Manifest.plist says unencrypted but Manifest.db is not a SQLite file", dir)
	}
	if b.db, err = backupfmt.OpenManifestDB(dbPath); err != nil {
		return nil, fmt.Errorf("open backup %s: %w", dir, err)
	}
	return b, nil
}

func (b *Backup) unlock(ctx context.Context, opts Options) error {
	if len(b.manifest.BackupKeyBag) == 0 {
		return fmt.Errorf("open backup %s: encrypted, but Manifest.plist has no BackupKeyBag", b.dir)
	}
	if len(opts.KEK) > 0 {
		k, err := backupcrypto.UnlockWithKEK(b.manifest.BackupKeyBag, opts.KEK)
		if err == nil {
			b.keys = k
			return nil
		}
		if !errors.Is(err, backupcrypto.ErrWrongPassword) {
			return fmt.Errorf("open backup %s: %w", b.dir, err)
		}
	}
	if opts.Password == nil {
		return fmt.Errorf("open backup %s: %w", b.dir, ErrPasswordRequired)
	}
	pw, err := opts.Password()
	if err != nil {
		return fmt.Errorf("open backup %s: password: %w", b.dir, err)
	}
	defer clear(pw)
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.keys, err = backupcrypto.Unlock(b.manifest.BackupKeyBag, pw); err != nil {
		return fmt.Errorf("open backup %s: %w", b.dir, err)
	}
	return nil
}

func (b *Backup) decryptManifest(src, tempParent string) (string, error) {
	if len(b.manifest.ManifestKey) == 0 {
		return "", fmt.Errorf("open backup %s: Manifest.db is encrypted but Manifest.plist has no ManifestKey", b.dir)
	}
	if tempParent == "" {
		tempParent = os.TempDir()
	}
	if err := refuseInside(tempParent, b.dir); err != nil {
		return "", fmt.Errorf("temporary folder %s: %w", tempParent, err)
	}
	tmp, err := os.MkdirTemp(tempParent, "snapback-manifest-") // 0700
	if err != nil {
		return "", fmt.Errorf("open backup %s: %w", b.dir, err)
	}
	b.tmp = tmp
	dst := filepath.Join(tmp, backupfmt.ManifestDBName)
	if err := b.keys.DecryptManifestDB(b.manifest.ManifestKey, src, dst); err != nil {
		return "", fmt.Errorf("open backup %s: %w", b.dir, err)
	}
	return dst, nil
}

// Close closes Manifest.db, removes the decrypted copy and forgets the keys.
func (b *Backup) Close() error {
	var errs []error
	if b.db != nil {
		errs = append(errs, b.db.Close())
		b.db = nil
	}
	if b.tmp != "" {
		if err := os.RemoveAll(b.tmp); err != nil {
			errs = append(errs, fmt.Errorf("remove decrypted Manifest.db: %w", err))
		}
		b.tmp = ""
	}
	if b.keys != nil {
		b.keys.Destroy()
		b.keys = nil
	}
	return errors.Join(errs...)
}

// Dir is the backup folder (absolute).
func (b *Backup) Dir() string { return b.dir }

// Encrypted reports whether the backup is encrypted.
func (b *Backup) Encrypted() bool { return b.manifest.IsEncrypted }

// KEK returns a copy of the key-encryption key of an encrypted backup (nil for a plain one),
// for Options.KEK of a later Open. Keep it in memory only; it unlocks the device's backups
// for as long as the password stays the same.
func (b *Backup) KEK() []byte {
	if b.keys == nil {
		return nil
	}
	return b.keys.KEK()
}

// Manifest returns the decoded Manifest.plist.
func (b *Backup) Manifest() backupfmt.Manifest { return b.manifest }

// Filter selects Manifest.db rows.
type Filter struct {
	// Domain keeps rows of exactly this domain ("" = all).
	Domain string
	// Pattern, when not empty, selects by relative path. Without glob characters (* ? [) it
	// is a case-insensitive substring of the relative path. Otherwise it is a glob over the whole relative
	// path in which * and ? stay inside one path element and ** spans any number of them;
	// a glob without "/" is matched against the last element only (like .gitignore).
	Pattern string
}

// List calls fn for every row that f selects, in Manifest.db order, streaming.
func (b *Backup) List(ctx context.Context, f Filter, fn func(backupfmt.Record) error) error {
	match, err := compileFilter(f)
	if err != nil {
		return err
	}
	return b.each(ctx, func(r backupfmt.Record) error {
		if !match(r) {
			return nil
		}
		return fn(r)
	})
}

// CopyFile writes the plaintext content of the regular-file row r to dst, decrypting it when
// the backup is encrypted, and returns its length. Memory use is bounded.
func (b *Backup) CopyFile(ctx context.Context, dst io.Writer, r backupfmt.Record) (int64, error) {
	if r.Flags != backupfmt.FlagFile {
		return 0, fmt.Errorf("%s %q: not a regular file", r.Domain, r.RelativePath)
	}
	if !backupfmt.ValidFileID(r.FileID) {
		return 0, fmt.Errorf("%s %q: %w: fileID %q", r.Domain, r.RelativePath, ErrUnsafePath, r.FileID)
	}
	// A blob is a regular file; one that is a symlink (damage, or planted) is refused, never
	// followed to whatever file it points at.
	path := backupfmt.BlobPath(b.dir, r.FileID)
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		return 0, fmt.Errorf("%s %q: %w: its blob %s is a symlink", r.Domain, r.RelativePath, ErrUnsafePath, r.FileID)
	}
	f, err := openNoFollow(path)
	if err != nil {
		return 0, fmt.Errorf("%s %q: %w", r.Domain, r.RelativePath, err)
	}
	defer f.Close()
	src := &ctxReader{ctx: ctx, r: f}
	if b.keys == nil {
		n, err := io.Copy(dst, src)
		if err != nil {
			return n, fmt.Errorf("%s %q: %w", r.Domain, r.RelativePath, err)
		}
		return n, nil
	}
	if len(r.File.EncryptionKey) == 0 {
		return 0, fmt.Errorf("%s %q: encrypted backup but the file has no EncryptionKey", r.Domain, r.RelativePath)
	}
	n, err := b.keys.DecryptFile(dst, src, r.File.EncryptionKey)
	if err != nil {
		return n, fmt.Errorf("%s %q: %w", r.Domain, r.RelativePath, err)
	}
	return n, nil
}

// ctxReader stops a long copy when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// refuseInside returns ErrInsideBackup when dir is backupDir or lies inside it, symlinks
// resolved as far as dir exists.
func refuseInside(dir, backupDir string) error {
	d, err := resolve(dir)
	if err != nil {
		return err
	}
	bd, err := resolve(backupDir)
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(bd, d)
	if err != nil {
		return nil // different volumes on Windows: certainly not inside
	}
	if rel == "." || filepath.IsLocal(rel) {
		return ErrInsideBackup
	}
	return nil
}

// resolve makes p absolute and resolves symlinks in its longest existing prefix.
func resolve(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	var rest []string
	cur := abs
	for {
		r, err := filepath.EvalSymlinks(cur)
		if err == nil {
			return filepath.Join(append([]string{r}, rest...)...), nil
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return abs, nil
		}
		rest = append([]string{filepath.Base(cur)}, rest...)
		cur = parent
	}
}

// safeDomain checks a domain name used as an output folder name.
func safeDomain(d string) error {
	if d == "" || d == "." || d == ".." || strings.ContainsAny(d, "/\\\x00") || !filepath.IsLocal(d) {
		return fmt.Errorf("%w: domain %q", ErrUnsafePath, d)
	}
	return nil
}

// safeRelPath checks a device-supplied relative path and returns it in OS form. Only plain,
// relative, "/"-separated paths of non-empty elements other than "." and ".." pass; a
// backslash is refused everywhere because Windows would read it as a separator.
func safeRelPath(p string) (string, error) {
	bad := func() (string, error) { return "", fmt.Errorf("%w: %q", ErrUnsafePath, p) }
	if p == "" || strings.HasPrefix(p, "/") || strings.ContainsAny(p, "\\\x00") {
		return bad()
	}
	for _, e := range strings.Split(p, "/") {
		if e == "" || e == "." || e == ".." {
			return bad()
		}
	}
	local := filepath.FromSlash(p)
	if !filepath.IsLocal(local) {
		return bad()
	}
	return local, nil
}
