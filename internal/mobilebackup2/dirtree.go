package mobilebackup2

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// errSymlink is what openDirAt returns for a symlink where a directory was expected.
var errSymlink = errors.New("is a symbolic link")

// uploadFile is a file being written by an upload or a copy.
type uploadFile interface {
	io.Writer
	Sync() error
	Close() error
	Stat() (fs.FileInfo, error)
}

// maxOpenDirs bounds dirTree's descriptors. A backup folder holds the UDID folder, Snapshot
// and 2 × 256 hash-prefix folders, so one run keeps all of them open (well under the usual
// 1024 soft limit minus what the process holds otherwise); a folder with more directories
// only costs re-opening once the cache is dropped.
const maxOpenDirs = 600

// dirTree keeps the backup folder's directories open for one run and does the per-file work
// relative to them (see dirops_linux.go): a device path's parent is looked up by its
// validated relative name, and only a directory seen for the first time is opened, from its
// own parent's descriptor, refusing a symlink. So a file costs no path walk from the root and
// no Lstat of its parents, and a symlink planted after a directory was opened is never
// followed: the descriptor names the directory that was verified, not whatever the path
// leads to now.
//
// An entry is dropped when the device removes or renames it (forgetIfOpen), so a descriptor
// never outlives its directory's name: a later CreateDirectory of the same name makes and
// opens the new directory.
type dirTree struct {
	root string // backup root; device paths start with <udid>/
	udid string
	// open maps a validated relative directory ("<udid>/ab") to its descriptor; "" is root.
	open map[string]dirHandle
	// prefix holds, in front of open, the hash-prefix folders every file goes to (set when
	// open gets them, cleared with it):
	// prefix[0][0xab] is <udid>/ab, prefix[1][0xab] <udid>/Snapshot/ab (lower-case hex
	// only, as open's keys are exact). Uploads come in no order of their names, so each one
	// is in other folders than the last, and the map lookups (hashing and comparing 40-byte
	// names scattered in memory) were 3.2% of a 200,000-file full backup's user time.
	prefix [2][256]openDir
}

type openDir struct {
	d  dirHandle
	ok bool // set: an entry (the zero value is none; a zero descriptor is not noDir)
}

// prefixSlot returns rel's entry in prefix, if rel is a hash-prefix folder.
func (t *dirTree) prefixSlot(rel string) *openDir {
	u := len(t.udid)
	var kind int
	switch {
	case len(rel) == u+3 && rel[u] == '/':
	case len(rel) == u+len(snapshotDir)+2 && rel[u:u+len(snapshotDir)] == snapshotDir:
		kind = 1
	default:
		return nil
	}
	hi, ok1 := lowerHex(rel[len(rel)-2])
	lo, ok2 := lowerHex(rel[len(rel)-1])
	if !ok1 || !ok2 || rel[:u] != t.udid {
		return nil
	}
	return &t.prefix[kind][hi<<4|lo]
}

func newDirTree(root, udid string) *dirTree {
	return &dirTree{root: root, udid: udid, open: map[string]dirHandle{}}
}

// close closes every descriptor; the tree can be used again (it reopens what it needs).
func (t *dirTree) close() {
	t.prefix = [2][256]openDir{}
	for k, d := range t.open {
		closeDir(d)
		delete(t.open, k)
	}
}

// trim drops every descriptor when the cache is over its bound. It is called between
// operations only, never while one holds handles from the tree.
func (t *dirTree) trim() {
	if len(t.open) > maxOpenDirs {
		t.close()
	}
}

// forgetIfOpen drops the cache if rel (a validated path about to be removed or renamed) is
// an open directory. A cached directory's ancestors are all cached (dir opens them first), so
// if rel is not cached, nothing under it is either.
func (t *dirTree) forgetIfOpen(rel string) {
	if _, ok := t.open[rel]; ok {
		t.close()
	}
}

// dir returns the descriptor of validated relative directory rel, opening it and its
// uncached ancestors. create makes missing directories (mode 0755) on the way.
func (t *dirTree) dir(rel string, create bool) (dirHandle, error) {
	slot := t.prefixSlot(rel)
	if slot != nil && slot.ok {
		return slot.d, nil
	}
	if d, ok := t.open[rel]; ok {
		return d, nil
	}
	var parent dirHandle
	var name string
	var err error
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		parent, err = t.dir(rel[:i], create)
		name = rel[i+1:]
	} else if rel == "" {
		d, err := openRootDir(t.root)
		if err != nil {
			return noDir, err
		}
		t.open[""] = d
		return d, nil
	} else {
		parent, err = t.dir("", false)
		name = rel
	}
	if err != nil {
		return noDir, err
	}
	if create {
		// mkdir first: a new folder then costs mkdirat + openat, an existing one (or a symlink
		// or file in its place, which openDirAt then refuses) EEXIST + openat.
		if err := mkdirAt(parent, name); err != nil && !errors.Is(err, fs.ErrExist) {
			return noDir, t.pathErr("mkdir", rel, err)
		}
	}
	d, err := openDirAt(parent, name)
	if err != nil {
		return noDir, t.pathErr("open", rel, err)
	}
	t.open[rel] = d
	if slot != nil {
		*slot = openDir{d, true}
	}
	return d, nil
}

// pathErr names the host path of rel in err, as the path-based code did: ErrBadPath for a
// symlink, an *os.PathError otherwise (errText sends only its errno text to the device).
func (t *dirTree) pathErr(op, rel string, err error) error {
	var pe *os.PathError
	switch {
	case errors.Is(err, errSymlink):
		return fmt.Errorf("%w %q: %s is a symbolic link", ErrBadPath, rel, t.host(rel))
	case errors.As(err, &pe):
		return err
	}
	return &os.PathError{Op: op, Path: t.host(rel), Err: err}
}

// host is the host path of validated relative path rel (for messages).
func (t *dirTree) host(rel string) string { return filepath.Join(t.root, filepath.FromSlash(rel)) }

// parentOf validates device path p and returns its parent directory's descriptor and its
// last component. create makes missing parents.
func (t *dirTree) parentOf(p string, create bool) (dirHandle, string, error) {
	if err := checkPath(p, t.udid); err != nil {
		return noDir, "", err
	}
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		// The UDID folder itself: its parent is root.
		d, err := t.dir("", false)
		return d, p, err
	}
	d, err := t.dir(p[:i], create)
	return d, p[i+1:], err
}
