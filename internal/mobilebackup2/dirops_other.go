//go:build !linux

package mobilebackup2

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Elsewhere than Linux a directory handle is its host path, and every operation checks with
// Lstat that what it walks into is no symlink: the path-based fallback of dirops_linux.go,
// with the race window between check and use that the descriptors close there.

type dirHandle = string

const noDir dirHandle = ""

func openRootDir(path string) (dirHandle, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return noDir, err
	}
	if !fi.IsDir() {
		return noDir, &os.PathError{Op: "open", Path: path, Err: syscall.ENOTDIR}
	}
	return path, nil
}

func openDirAt(d dirHandle, name string) (dirHandle, error) {
	p := filepath.Join(d, name)
	fi, err := os.Lstat(p)
	if err != nil {
		return noDir, err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return noDir, errSymlink
	}
	if !fi.IsDir() {
		return noDir, &os.PathError{Op: "open", Path: p, Err: syscall.ENOTDIR}
	}
	return p, nil
}

func closeDir(dirHandle) {}

func mkdirAt(d dirHandle, name string) error { return os.Mkdir(filepath.Join(d, name), 0o755) }

func modeAt(d dirHandle, name string) (fs.FileMode, error) {
	fi, err := os.Lstat(filepath.Join(d, name))
	if err != nil {
		return 0, err
	}
	return fi.Mode().Type(), nil
}

// uploadFiles creates uploads; here each is a new *os.File (see dirops_linux.go).
type uploadFiles struct{}

func (uploadFiles) create(d dirHandle, name string, perm uint32) (uploadFile, error) {
	return createExcl(filepath.Join(d, name), fs.FileMode(perm))
}

func (uploadFiles) reuse(uploadFile) {}

func renameAt(d1 dirHandle, n1 string, d2 dirHandle, n2 string) error {
	return rename(filepath.Join(d1, n1), filepath.Join(d2, n2))
}

func unlinkAt(d dirHandle, name string) error {
	p := filepath.Join(d, name)
	if m, err := modeAt(d, name); err == nil && m.IsDir() {
		return &os.PathError{Op: "unlink", Path: p, Err: syscall.EISDIR}
	}
	return os.Remove(p)
}

func removeAllAt(d dirHandle, name string) error {
	p := filepath.Join(d, name)
	if _, err := os.Lstat(p); err != nil {
		return err
	}
	return os.RemoveAll(p)
}

func readDirAt(d dirHandle, name string) ([]fs.DirEntry, error) {
	p, err := openDirAt(d, name)
	if err != nil {
		return nil, err
	}
	return os.ReadDir(p)
}

func openReadAt(d dirHandle, name string) (*os.File, error) {
	return openNoFollow(filepath.Join(d, name))
}
