package mobilebackup2

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ErrBadPath is wrapped by every refusal of a device-supplied path.
var ErrBadPath = errors.New("refused device path")

// MaxPathLen bounds a device-supplied path (same as devicelink.MaxNameLen).
const MaxPathLen = 4096

// ValidatePath checks a device-supplied path syntactically, before anything touches the
// filesystem: relative, slash-separated, first component exactly udid, no empty, "." or ".."
// components, no NUL, no backslash. It returns the components.
//
// filepath.Join(root, "../x") silently escapes root, so nothing may be joined before this.
func ValidatePath(p, udid string) ([]string, error) {
	if err := checkPath(p, udid); err != nil {
		return nil, err
	}
	return strings.Split(p, "/"), nil
}

// checkPath is ValidatePath without building the components (no allocation: it runs twice
// per uploaded file).
func checkPath(p, udid string) error {
	switch {
	case p == "":
		return fmt.Errorf("%w: empty", ErrBadPath)
	case len(p) > MaxPathLen:
		return fmt.Errorf("%w: %d bytes long", ErrBadPath, len(p))
	case strings.ContainsRune(p, 0):
		return fmt.Errorf("%w %q: contains NUL", ErrBadPath, p)
	case strings.ContainsRune(p, '\\'):
		return fmt.Errorf("%w %q: contains a backslash", ErrBadPath, p)
	case p[0] == '/':
		return fmt.Errorf("%w %q: absolute", ErrBadPath, p)
	case udid == "":
		return fmt.Errorf("%w %q: no target identifier to check against", ErrBadPath, p)
	}
	first := ""
	for rest, more := p, true; more; {
		var c string
		c, rest, more = strings.Cut(rest, "/")
		if first == "" {
			first = c
		}
		switch c {
		case "":
			return fmt.Errorf("%w %q: empty component", ErrBadPath, p)
		case ".", "..":
			return fmt.Errorf("%w %q: %q component", ErrBadPath, p, c)
		}
		// A Windows volume name ("C:") would make filepath.Join absolute there.
		if filepath.VolumeName(c) != "" {
			return fmt.Errorf("%w %q: volume name", ErrBadPath, p)
		}
	}
	if first != udid {
		return fmt.Errorf("%w %q: outside %s/", ErrBadPath, p, udid)
	}
	return nil
}

// resolver maps validated device paths to host paths under root, refusing symlinks.
type resolver struct {
	root string // backup root; device paths start with <udid>/
	udid string
	// base, when set, is the host folder that the first component <udid> stands for, in
	// place of root/<udid>: a restore serves a snapshot folder whose name is its ID, not the
	// UDID. It must be a real directory (callers resolve symlinks in it first).
	base string
	// dirs caches host directories already seen to be real directories (not symlinks)
	// while one device message is served (see server.handle), so each file of an upload
	// batch does not Lstat every parent again. Nothing the device can ask
	// for creates a symlink, so an entry can only go stale by the directory disappearing or
	// becoming a file, and then the operation fails exactly as it would without the cache
	// (ENOENT/ENOTDIR on the next component). mkdirAll never trusts it, because it must
	// recreate removed directories. nil disables caching.
	dirs map[string]struct{}
}

func newResolver(root, udid string) resolver {
	return resolver{root: root, udid: udid, dirs: map[string]struct{}{}}
}

// forget drops the directory cache.
func (r resolver) forget() { clear(r.dirs) }

func (r resolver) known(dir string) bool {
	_, ok := r.dirs[dir]
	return ok
}

func (r resolver) remember(dir string) {
	if r.dirs != nil && len(r.dirs) < 1<<16 {
		r.dirs[dir] = struct{}{}
	}
}

// resolve validates p and returns the host path. Every existing component, including the
// last, is checked with Lstat and must not be a symlink: Snapback never creates links in a
// backup folder, so one there was planted and could lead reads or writes outside it.
// Components after the first missing one cannot exist, so the walk stops there.
func (r resolver) resolve(p string) (string, error) { return r.walk(p, true) }

func (r resolver) walk(p string, checkLast bool) (string, error) {
	parts, err := ValidatePath(p, r.udid)
	if err != nil {
		return "", err
	}
	cur := r.root
	missing := false
	for i, c := range parts {
		cur = r.join(cur, i, c)
		last := i == len(parts)-1
		if missing || (!last && r.known(cur)) || (last && !checkLast) {
			continue
		}
		fi, err := os.Lstat(cur)
		if errors.Is(err, fs.ErrNotExist) {
			missing = true
			continue
		}
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return "", fmt.Errorf("%w %q: %s is a symbolic link", ErrBadPath, p, cur)
		}
		if fi.IsDir() && i < len(parts)-1 {
			r.remember(cur) // not the last one: callers may be about to remove or replace it
		}
	}
	return cur, nil
}

// join appends component i of a validated path to cur, mapping the first one to base.
func (r resolver) join(cur string, i int, c string) string {
	if i == 0 && r.base != "" {
		return r.base
	}
	return filepath.Join(cur, c)
}

// mkdirAll creates host path dir (already resolved under root) component by component,
// refusing symlinks on the way, with mode 0755. An existing directory is success.
func (r resolver) mkdirAll(p string) (string, error) {
	parts, err := ValidatePath(p, r.udid)
	if err != nil {
		return "", err
	}
	cur := r.root
	for i, c := range parts {
		cur = r.join(cur, i, c)
		fi, err := os.Lstat(cur)
		if errors.Is(err, fs.ErrNotExist) {
			if err := os.Mkdir(cur, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				return "", err
			}
			r.remember(cur)
			continue
		}
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return "", fmt.Errorf("%w %q: %s is a symbolic link", ErrBadPath, p, cur)
		}
		if !fi.IsDir() {
			return "", &os.PathError{Op: "mkdir", Path: cur, Err: errNotDir}
		}
		r.remember(cur)
	}
	return cur, nil
}
