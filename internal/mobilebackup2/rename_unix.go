//go:build unix

package mobilebackup2

import (
	"os"
	"syscall"
)

// rename is rename(2) without os.Rename's extra Lstat of the destination (two per uploaded
// file otherwise). rename(2) already refuses to put a file over a directory (EISDIR).
func rename(from, to string) error {
	if err := syscall.Rename(from, to); err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return nil
}
