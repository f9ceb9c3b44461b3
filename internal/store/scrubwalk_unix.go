//go:build unix

package store

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// listWalkDir lists dir with inode numbers from getdents (see listDir): the scrub's merge of
// many snapshots' folders then stats each distinct file once, not once per snapshot.
func listWalkDir(dir string) ([]walkEnt, error) {
	fd, err := openDirFd(dir)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", dir, err)
	}
	defer unix.Close(fd)
	ents, err := listDir(fd, dir)
	if err != nil {
		return nil, err
	}
	out := make([]walkEnt, len(ents))
	for i, e := range ents {
		k := walkUnknown // typeOther (a symlink or a device) and typeUnknown: lstat says
		switch e.typ {
		case typeFile:
			k = walkFile
		case typeDir:
			k = walkDir
		}
		out[i] = walkEnt{name: e.name, ino: e.ino, kind: k}
	}
	return out, nil
}
