//go:build windows

package store

import "os"

// listWalkDir lists dir; Windows listings carry no file index, so every file is stat'ed.
func listWalkDir(dir string) ([]walkEnt, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := make([]walkEnt, len(ents))
	for i, e := range ents {
		k := walkUnknown
		if e.IsDir() {
			k = walkDir
		}
		out[i] = walkEnt{name: e.Name(), kind: k}
	}
	return out, nil
}
