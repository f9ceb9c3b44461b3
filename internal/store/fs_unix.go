//go:build unix

package store

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// isMountPoint reports whether dir is the root of a mounted filesystem: its device differs
// from its parent's, or it is its own parent.
func isMountPoint(dir string) (bool, error) {
	var st, pst unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return false, &os.PathError{Op: "stat", Path: dir, Err: err}
	}
	parent := filepath.Dir(dir)
	if parent == dir {
		return true, nil
	}
	if err := unix.Stat(parent, &pst); err != nil {
		return false, &os.PathError{Op: "stat", Path: parent, Err: err}
	}
	return st.Dev != pst.Dev || st.Ino == pst.Ino, nil
}

// fsIdentity names the filesystem dir lives on (see FSIdentity).
func fsIdentity(dir string) (FSIdentity, error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return FSIdentity{}, &os.PathError{Op: "stat", Path: dir, Err: err}
	}
	var sf unix.Statfs_t
	if err := unix.Statfs(dir, &sf); err != nil {
		return FSIdentity{}, &os.PathError{Op: "statfs", Path: dir, Err: err}
	}
	id := FSIdentity{FSID: fmt.Sprintf("%08x%08x", uint32(sf.Fsid.Val[0]), uint32(sf.Fsid.Val[1]))}
	platformIdentity(dir, &st, &id)
	return id, nil
}
