//go:build unix && !linux

package store

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// platformIdentity: without mountinfo or udev, the device number and fsid identify the
// filesystem; macOS removes /Volumes/<name> on eject, which the parent-folder check catches.
func platformIdentity(dir string, st *unix.Stat_t, id *FSIdentity) {
	id.Dev = fmt.Sprintf("%d", uint64(st.Dev))
}
