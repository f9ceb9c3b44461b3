package browse

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"snapback/internal/backupfmt"
)

// CameraRollDomain and CameraRollPrefix locate the photos and videos of the Camera Roll.
const (
	CameraRollDomain = "CameraRollDomain"
	CameraRollPrefix = "Media/DCIM/"
)

// ExtractOptions configure Extract and ExportCameraRoll.
type ExtractOptions struct {
	// Overwrite replaces existing output files; otherwise an existing file is ErrExists.
	Overwrite bool
	// Progress, when set, is called after each file is written with its output path
	// (relative to the output folder) and size.
	Progress func(name string, size int64)
}

// ExtractStats summarise an extraction.
type ExtractStats struct {
	Files   int      // regular files written
	Bytes   int64    // plaintext bytes written
	Skipped int      // matching rows that are not regular files (directories, symlinks)
	Refused []string // rows refused for unsafe paths, as "domain/relativePath" (quoted)
	// Existing lists output files that already existed and were left alone (Overwrite off).
	// Two device paths differing only in case land here on case-insensitive filesystems.
	Existing []string
	// Undecodable lists Manifest.db rows skipped because they did not decode (damage); the
	// returned error then wraps ErrDamagedRow.
	Undecodable []string
}

// Extract writes every regular file that f selects to outDir/<domain>/<relativePath>, with
// the file's modification time. Rows with unsafe paths are skipped and listed in Refused, and
// files that exist already in Existing; the returned error then wraps ErrUnsafePath or
// ErrExists. Any other error (a missing blob, a read, write or decryption failure) stops the
// extraction. outDir is created if needed and must not be inside the backup folder.
func (b *Backup) Extract(ctx context.Context, f Filter, outDir string, opts ExtractOptions) (ExtractStats, error) {
	match, err := compileFilter(f)
	if err != nil {
		return ExtractStats{}, err
	}
	return b.extract(ctx, outDir, opts, func(r backupfmt.Record) (string, bool, error) {
		if !match(r) {
			return "", false, nil
		}
		if err := safeDomain(r.Domain); err != nil {
			return "", true, err
		}
		rel, err := safeRelPath(r.RelativePath)
		if err != nil {
			return "", true, err
		}
		return filepath.Join(r.Domain, rel), true, nil
	})
}

// ExportCameraRoll writes the Camera Roll (CameraRollDomain, Media/DCIM/**) to outDir, keeping
// the DCIM folder structure (outDir/100APPLE/IMG_0001.HEIC) and modification times.
func (b *Backup) ExportCameraRoll(ctx context.Context, outDir string, opts ExtractOptions) (ExtractStats, error) {
	return b.extract(ctx, outDir, opts, func(r backupfmt.Record) (string, bool, error) {
		if r.Domain != CameraRollDomain || !strings.HasPrefix(r.RelativePath, CameraRollPrefix) {
			return "", false, nil
		}
		rel, err := safeRelPath(strings.TrimPrefix(r.RelativePath, CameraRollPrefix))
		if err != nil {
			// Report the full device path, not the trimmed one.
			return "", true, fmt.Errorf("%w: %q", ErrUnsafePath, r.RelativePath)
		}
		return rel, true, nil
	})
}

// target maps a row to its output path (relative, OS form); ok false skips the row.
type target func(backupfmt.Record) (name string, ok bool, err error)

func (b *Backup) extract(ctx context.Context, outDir string, opts ExtractOptions, to target) (ExtractStats, error) {
	var st ExtractStats
	// Checked before anything is created, so a refused run leaves the backup folder as it was.
	if err := refuseInside(outDir, b.dir); err != nil {
		return st, fmt.Errorf("output folder %s: %w", outDir, err)
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return st, fmt.Errorf("output folder: %w", err)
	}
	root, err := os.OpenRoot(outDir)
	if err != nil {
		return st, fmt.Errorf("output folder: %w", err)
	}
	defer root.Close()
	err = b.each(ctx, func(r backupfmt.Record) error {
		name, ok, err := to(r)
		if !ok {
			return nil
		}
		if r.Flags != backupfmt.FlagFile {
			st.Skipped++
			return nil
		}
		if errors.Is(err, ErrUnsafePath) {
			st.Refused = append(st.Refused, strconv.Quote(r.Domain+"/"+r.RelativePath))
			return nil
		}
		if err != nil {
			return err
		}
		n, err := b.writeFile(ctx, root, name, r, opts.Overwrite)
		if errors.Is(err, ErrExists) {
			st.Existing = append(st.Existing, strconv.Quote(name))
			return nil
		}
		if errors.Is(err, ErrUnsafePath) {
			st.Refused = append(st.Refused, strconv.Quote(r.Domain+"/"+r.RelativePath)+" (symlinked blob)")
			return nil
		}
		if err != nil {
			return err
		}
		st.Files++
		st.Bytes += n
		if opts.Progress != nil {
			opts.Progress(name, n)
		}
		return nil
	})
	if err != nil {
		return st, err
	}
	var errs []error
	if bad := b.Undecodable(); len(bad) > 0 {
		st.Undecodable = bad
		errs = append(errs, fmt.Errorf("%w: skipped %d undecodable Manifest.db row(s): %s", ErrDamagedRow, len(bad), bad[0]))
	}
	if len(st.Refused) > 0 {
		errs = append(errs, fmt.Errorf("%w: refused %d row(s)", ErrUnsafePath, len(st.Refused)))
	}
	if len(st.Existing) > 0 {
		errs = append(errs, fmt.Errorf("%w: left %d file(s) alone", ErrExists, len(st.Existing)))
	}
	return st, errors.Join(errs...)
}

// writeFile writes r's content to name under root through a temporary file that is renamed
// into place only when complete, so an interrupted extraction never leaves a truncated file
// under a real name.
func (b *Backup) writeFile(ctx context.Context, root *os.Root, name string, r backupfmt.Record, overwrite bool) (_ int64, err error) {
	if err := root.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return 0, fmt.Errorf("extract %s: %w", name, err)
	}
	if !overwrite {
		if _, err := root.Lstat(name); err == nil {
			return 0, fmt.Errorf("extract %s: %w", name, ErrExists)
		}
	}
	var rnd [6]byte
	rand.Read(rnd[:])
	tmp := name + ".snapback-" + hex.EncodeToString(rnd[:])
	// The device's permission bits are kept, except that the owner can always write its own
	// copy and nothing becomes group- or world-writable (or setuid: device data is hostile).
	perm := fs.FileMode(r.File.Mode&0o755) | 0o600
	out, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return 0, fmt.Errorf("extract %s: %w", name, err)
	}
	defer func() {
		if out != nil {
			out.Close()
		}
		if err != nil {
			root.Remove(tmp)
		}
	}()
	n, err := b.CopyFile(ctx, out, r)
	if err != nil {
		return n, fmt.Errorf("extract %s: %w", name, err)
	}
	cerr := out.Close()
	out = nil
	if cerr != nil {
		return n, fmt.Errorf("extract %s: %w", name, cerr)
	}
	if r.File.LastModified != 0 {
		mt := time.Unix(r.File.LastModified, 0)
		if err := root.Chtimes(tmp, mt, mt); err != nil {
			return n, fmt.Errorf("extract %s: %w", name, err)
		}
	}
	if err := root.Rename(tmp, name); err != nil {
		return n, fmt.Errorf("extract %s: %w", name, err)
	}
	return n, nil
}

// compileFilter turns a Filter into a predicate (see Filter.Pattern).
func compileFilter(f Filter) (func(backupfmt.Record) bool, error) {
	domainOK := func(r backupfmt.Record) bool { return f.Domain == "" || r.Domain == f.Domain }
	p := f.Pattern
	switch {
	case p == "":
		return domainOK, nil
	case !strings.ContainsAny(p, "*?["):
		lp := strings.ToLower(p)
		return func(r backupfmt.Record) bool {
			return domainOK(r) && strings.Contains(strings.ToLower(r.RelativePath), lp)
		}, nil
	}
	re, err := globRegexp(p)
	if err != nil {
		return nil, err
	}
	baseOnly := !strings.Contains(p, "/")
	return func(r backupfmt.Record) bool {
		if !domainOK(r) {
			return false
		}
		s := r.RelativePath
		if baseOnly {
			s = path.Base(s)
		}
		return re.MatchString(s)
	}, nil
}

// globRegexp compiles a glob where * and ? stay within one path element and ** crosses them
// ("Media/DCIM/**" matches everything below DCIM; "**/x.jpg" also matches "x.jpg").
func globRegexp(p string) (*regexp.Regexp, error) {
	var sb strings.Builder
	sb.WriteString(`^`)
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case strings.HasPrefix(p[i:], "**/"):
			sb.WriteString(`(?:.*/)?`)
			i += 2
		case strings.HasPrefix(p[i:], "**"):
			sb.WriteString(`.*`)
			i++
		case c == '*':
			sb.WriteString(`[^/]*`)
		case c == '?':
			sb.WriteString(`[^/]`)
		case c == '[':
			j := strings.IndexByte(p[i+1:], ']')
			if j < 0 {
				return nil, fmt.Errorf("pattern %q: unclosed [", p)
			}
			class := p[i+1 : i+1+j]
			if strings.HasPrefix(class, "!") {
				class = "^" + class[1:]
			}
			sb.WriteString("[" + strings.ReplaceAll(class, `\`, `\\`) + "]")
			i += j + 1
		default:
			_, size := utf8.DecodeRuneInString(p[i:])
			sb.WriteString(regexp.QuoteMeta(p[i : i+size]))
			i += size - 1
		}
	}
	sb.WriteString(`$`)
	re, err := regexp.Compile(sb.String())
	if err != nil {
		return nil, fmt.Errorf("pattern %q: %w", p, err)
	}
	return re, nil
}
