//go:build windows

package store

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/windows"
)

// isMountPoint reports whether dir is a drive or volume root (C:\, \\server\share\).
func isMountPoint(dir string) (bool, error) {
	if _, err := os.Stat(dir); err != nil {
		return false, err
	}
	vol := filepath.VolumeName(dir)
	return vol != "" && filepath.Clean(dir) == filepath.Clean(vol+`\`), nil
}

// fsIdentity names the volume dir lives on by its serial number.
func fsIdentity(dir string) (FSIdentity, error) {
	root := filepath.VolumeName(dir) + `\`
	p, err := windows.UTF16PtrFromString(root)
	if err != nil {
		return FSIdentity{}, err
	}
	var serial uint32
	if err := windows.GetVolumeInformation(p, nil, 0, &serial, nil, nil, nil, 0); err != nil {
		return FSIdentity{}, &os.PathError{Op: "GetVolumeInformation", Path: root, Err: err}
	}
	return FSIdentity{UUID: fmt.Sprintf("%08x", serial), Mount: root}, nil
}
