//go:build unix && !linux

package store

import (
	"fmt"
	"os"
)

// listDir lists the open directory fd (at path) with inode numbers. Without getdents64's
// d_ino in the standard library here, each entry costs one fstatat: correct, but no cheaper
// than a full measure (macOS could use getattrlistbulk; not done).
func listDir(fd int, path string) ([]dirent, error) {
	out, err := listTypes(path)
	if err != nil {
		return nil, err
	}
	for i := range out {
		st, err := statAt(fd, out[i].name)
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", path, err)
		}
		out[i].ino, out[i].typ = uint64(st.Ino), modeType(uint32(st.Mode))
	}
	return out, nil
}

// listTypes lists directory path with each entry's type as the directory says it, without a
// stat: typeOther for anything but a folder or a regular file (a symlink among them).
func listTypes(path string) ([]dirent, error) {
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", path, err)
	}
	out := make([]dirent, 0, len(entries))
	for _, e := range entries {
		t := typeOther
		switch {
		case e.Type().IsDir():
			t = typeDir
		case e.Type().IsRegular():
			t = typeFile
		}
		out = append(out, dirent{name: e.Name(), typ: t})
	}
	return out, nil
}
