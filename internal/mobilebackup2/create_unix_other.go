//go:build unix && !linux

package mobilebackup2

import (
	"io/fs"
	"os"
	"syscall"
)

// createExcl creates a new file (O_EXCL: never an existing one, never through a symlink) for
// writing, with permissions perm. It uses the raw open(2) and os.NewFile because
// os.OpenFile also tries to register a regular file with the network poller. (Linux does
// not come here: dirops_linux.go creates files relative to directory descriptors.)
func createExcl(name string, perm fs.FileMode) (*os.File, error) {
	fd, err := syscall.Open(name, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_EXCL|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, uint32(perm.Perm()))
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	return os.NewFile(uintptr(fd), name), nil
}
