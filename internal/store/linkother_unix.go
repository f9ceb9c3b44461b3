//go:build unix

package store

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// linkOther handles an entry of a folder being hard-link cloned whose listing did not say
// file or folder: it asks the filesystem. A symlink is recreated in dst (never followed) and
// reported as typeOther, like what no backup holds (sockets, FIFOs, devices), which is left
// out; a file or folder is reported for the caller to link or descend into.
func linkOther(sfd int, src, dst, name string) (entryType, error) {
	st, err := statAt(sfd, name)
	if err != nil {
		return typeOther, fmt.Errorf("clone: %w", err)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return typeDir, nil
	case unix.S_IFREG:
		return typeFile, nil
	case unix.S_IFLNK:
		link, err := os.Readlink(filepath.Join(src, name))
		if err != nil {
			return typeOther, fmt.Errorf("clone: %w", err)
		}
		if err := os.Symlink(link, filepath.Join(dst, name)); err != nil {
			return typeOther, fmt.Errorf("clone: %w", err)
		}
	}
	return typeOther, nil
}
