//go:build linux

package mobilebackup2

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// On Linux the backup folder is worked on through open directory descriptors (see dirTree):
// every file operation is relative to its parent's descriptor (openat, renameat, unlinkat),
// so no path is resolved from the root per file and no symlink is ever followed, whatever
// a local process plants after a directory was verified. Uploaded files are raw descriptors:
// os.NewFile costs an fcntl per file and buys nothing for a file written once, front to back.

// dirHandle is an open directory (O_DIRECTORY, never a symlink).
type dirHandle = int

const noDir dirHandle = -1

func openRootDir(path string) (dirHandle, error) {
	// The root is the user's choice (a symlink to another disk is theirs to make): it is
	// followed. Everything under it is opened with O_NOFOLLOW.
	fd, err := retryEINTR(func() (int, error) {
		return unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	})
	if err != nil {
		return noDir, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return fd, nil
}

// openDirAt opens directory name inside d without following a symlink: a symlink there is
// errSymlink, anything else but a directory ENOTDIR.
func openDirAt(d dirHandle, name string) (dirHandle, error) {
	fd, err := retryEINTR(func() (int, error) {
		return unix.Openat(d, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	})
	if err == nil {
		return fd, nil
	}
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		if m, serr := modeAt(d, name); serr == nil && m&fs.ModeSymlink != 0 {
			return noDir, errSymlink
		}
	}
	return noDir, err
}

func closeDir(d dirHandle) { _ = unix.Close(d) }

func mkdirAt(d dirHandle, name string) error {
	_, err := retryEINTR(func() (int, error) { return 0, unix.Mkdirat(d, name, 0o755) })
	return err
}

// modeAt is lstat of name in d: its type bits (fs.ModeDir, fs.ModeSymlink, 0 for a file).
func modeAt(d dirHandle, name string) (fs.FileMode, error) {
	var st unix.Stat_t
	if _, err := retryEINTR(func() (int, error) { return 0, unix.Fstatat(d, name, &st, unix.AT_SYMLINK_NOFOLLOW) }); err != nil {
		return 0, err
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return fs.ModeDir, nil
	case unix.S_IFLNK:
		return fs.ModeSymlink, nil
	case unix.S_IFREG:
		return 0, nil
	}
	return fs.ModeIrregular, nil
}

// uploadFiles creates uploads and takes each back once it is closed and reported
// (reuse), to hand the same object out again: one upload is open at a time, and a new
// rawFile per upload (168 bytes with its stat buffer) was 34 of the 153 MB a 200,000-file
// full backup allocated (pprof), each of which the garbage collector had to reclaim.
type uploadFiles struct{ spare *rawFile }

// create creates name in d as a new file for writing: O_EXCL, so never an existing file
// (one hard-linked into a snapshot can never be opened for writing) and never through a
// symlink (O_EXCL fails on one, O_NOFOLLOW says so twice). perm is applied at creation; the
// descriptor stays writable even for 0444.
func (u *uploadFiles) create(d dirHandle, name string, perm uint32) (uploadFile, error) {
	fd, err := openCreate(d, name, perm)
	if err != nil {
		return nil, err
	}
	f := u.spare
	if f == nil {
		f = new(rawFile)
	}
	u.spare = nil
	f.fd, f.info = fd, rawInfo{name: name}
	return f, nil
}

// reuse takes back f, which is closed and whose FileInfo nobody holds any more.
func (u *uploadFiles) reuse(f uploadFile) {
	if rf, ok := f.(*rawFile); ok {
		rf.fd = -1
		u.spare = rf
	}
}

// openCreate is openat(d, name, O_CREAT|O_EXCL…) with the name made NUL-terminated on the
// stack: unix.Openat copies it to the heap, 10 MB of a 200,000-file full backup's garbage.
// O_LARGEFILE is what unix.Openat adds itself: 0 on 64-bit systems, but without it a 32-bit
// build (the armhf package) could not write an upload past 2 GiB (EFBIG).
func openCreate(d dirHandle, name string, perm uint32) (int, error) {
	const flags = unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_LARGEFILE
	var buf [256]byte
	if len(name) >= len(buf) || strings.IndexByte(name, 0) >= 0 {
		return retryEINTR(func() (int, error) { return unix.Openat(d, name, flags, perm) })
	}
	copy(buf[:], name)
	buf[len(name)] = 0
	for {
		fd, _, e := unix.Syscall6(unix.SYS_OPENAT, uintptr(d), uintptr(unsafe.Pointer(&buf[0])), flags, uintptr(perm), 0, 0)
		switch e {
		case 0:
			return int(fd), nil
		case unix.EINTR:
			continue
		}
		return -1, e
	}
}

func renameAt(d1 dirHandle, n1 string, d2 dirHandle, n2 string) error {
	_, err := retryEINTR(func() (int, error) { return 0, unix.Renameat(d1, n1, d2, n2) })
	return err
}

// unlinkAt removes a file or symlink (never what it points to); a directory is EISDIR.
func unlinkAt(d dirHandle, name string) error {
	_, err := retryEINTR(func() (int, error) { return 0, unix.Unlinkat(d, name, 0) })
	return err
}

// removeAllAt removes name in d and, if it is a directory, everything in it, relative to
// descriptors all the way down (symlinks inside are unlinked, never followed).
func removeAllAt(d dirHandle, name string) error {
	err := unlinkAt(d, name)
	if err == nil || !errors.Is(err, unix.EISDIR) {
		return err
	}
	sub, err := retryEINTR(func() (int, error) {
		return unix.Openat(d, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	})
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(sub), name) // owns sub; rare (directories only)
	names, err := f.Readdirnames(-1)
	for _, n := range names {
		if err == nil {
			if err = removeAllAt(sub, n); errors.Is(err, unix.ENOENT) {
				err = nil
			}
		}
	}
	f.Close()
	if err != nil {
		return err
	}
	_, err = retryEINTR(func() (int, error) { return 0, unix.Unlinkat(d, name, unix.AT_REMOVEDIR) })
	return err
}

// readDirAt lists directory name in d (not following a symlink).
func readDirAt(d dirHandle, name string) ([]fs.DirEntry, error) {
	fd, err := openDirAt(d, name)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	return f.ReadDir(-1)
}

// openReadAt opens file name in d read-only without following a symlink.
func openReadAt(d dirHandle, name string) (*os.File, error) {
	fd, err := retryEINTR(func() (int, error) {
		return unix.Openat(d, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	})
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), name), nil
}

// rawFile is an uploaded file being written through its bare descriptor. Its FileInfo lives
// in it, and uploadFiles hands the same one out for every upload: no allocation per file.
type rawFile struct {
	fd   int
	info rawInfo
}

func (f *rawFile) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		m, err := unix.Write(f.fd, p)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return n, err
		}
		if m == 0 {
			return n, syscall.EIO
		}
		n += m
		p = p[m:]
	}
	return n, nil
}

func (f *rawFile) Sync() error {
	_, err := retryEINTR(func() (int, error) { return 0, unix.Fsync(f.fd) })
	return err
}

// Close closes the descriptor; EINTR is not retried (Linux has closed it already).
func (f *rawFile) Close() error { return unix.Close(f.fd) }

// Stat is fstat(2) as an fs.FileInfo whose Sys is a *syscall.Stat_t, as os.File.Stat gives.
// The FileInfo is f's own: a later Stat overwrites it.
func (f *rawFile) Stat() (fs.FileInfo, error) {
	if err := syscall.Fstat(f.fd, &f.info.st); err != nil {
		return nil, err
	}
	return &f.info, nil
}

type rawInfo struct {
	name string
	st   syscall.Stat_t
}

func (i *rawInfo) Name() string       { return i.name }
func (i *rawInfo) Size() int64        { return i.st.Size }
func (i *rawInfo) Mode() fs.FileMode  { return fs.FileMode(i.st.Mode & 0o777) } // a regular file
func (i *rawInfo) ModTime() time.Time { return time.Unix(i.st.Mtim.Unix()) }
func (i *rawInfo) IsDir() bool        { return false }
func (i *rawInfo) Sys() any           { return &i.st }

func retryEINTR(fn func() (int, error)) (int, error) {
	for {
		n, err := fn()
		if err != unix.EINTR {
			return n, err
		}
	}
}
