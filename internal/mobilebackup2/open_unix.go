//go:build unix

package mobilebackup2

import (
	"os"
	"syscall"
)

// openNoFollow opens a file read-only without following a final symlink, closing the gap
// between the resolver's Lstat and the open.
func openNoFollow(p string) (*os.File, error) {
	return os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
}

// createExcl creates a new file (O_EXCL: never an existing one) for writing. It uses the raw
// open(2) and os.NewFile because os.OpenFile also tries to register a regular file with the
// network poller (a failing epoll_ctl plus fcntl calls), which adds up over 10⁵ files.
func createExcl(name string) (*os.File, error) {
	fd, err := syscall.Open(name, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_EXCL|syscall.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	return os.NewFile(uintptr(fd), name), nil
}
