//go:build windows

package diskspace

import (
	"math"
	"os"

	"golang.org/x/sys/windows"
)

// Free is the space available to this user (quotas applied) on the volume holding dir.
func Free(dir string) (int64, error) {
	p, err := windows.UTF16PtrFromString(dir)
	if err != nil {
		return 0, &os.PathError{Op: "GetDiskFreeSpaceEx", Path: dir, Err: err}
	}
	var avail, total, free uint64
	if err := windows.GetDiskFreeSpaceEx(p, &avail, &total, &free); err != nil {
		return 0, &os.PathError{Op: "GetDiskFreeSpaceEx", Path: dir, Err: err}
	}
	return int64(min(avail, math.MaxInt64)), nil
}
