//go:build unix

package store

import (
	"context"
	"fmt"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// inheritedBytes returns the bytes that keep, the folder of a snapshot that stays, holds
// only together with gone, the folder about to be deleted: the files both list under the
// same name with the same inode number and exactly two links (one in each folder; every
// inode appears at most once per backup folder). Once gone is removed those files have one
// link and become keep's own, so keep's UniqueSize grows by exactly this and nothing else
// changes in its record. Files shared with a third folder (nlink > 2) stay shared.
//
// It compares the two trees one directory at a time from getdents listings (see diffTree)
// and stats only the files the two folders share: memory is two directories' listings,
// where measure() would hold an inode map of every file. Reflink and copy clones share no
// inode numbers, so nothing is inherited there, which is what measure() says too.
func inheritedBytes(ctx context.Context, keep, gone string) (int64, error) {
	var total int64
	if err := inheritedDir(ctx, keep, gone, &total); err != nil {
		return 0, fmt.Errorf("compare %s with %s: %w", keep, gone, err)
	}
	return total, nil
}

func inheritedDir(ctx context.Context, kDir, gDir string, total *int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	kfd, err := openDirFd(kDir)
	if err != nil {
		return fmt.Errorf("open %s: %w", kDir, err)
	}
	defer unix.Close(kfd)
	gfd, err := openDirFd(gDir)
	if err != nil {
		return fmt.Errorf("open %s: %w", gDir, err)
	}
	defer unix.Close(gfd)
	kEnts, err := listDir(kfd, kDir)
	if err != nil {
		return err
	}
	gList, err := listDir(gfd, gDir)
	if err != nil {
		return err
	}
	gEnts := make(map[string]dirent, len(gList))
	for _, e := range gList {
		gEnts[e.name] = e
	}
	gList = nil
	for _, e := range kEnts {
		ge, ok := gEnts[e.name]
		if !ok {
			continue
		}
		if e.typ == typeUnknown {
			st, err := statAt(kfd, e.name)
			if err != nil {
				return fmt.Errorf("stat %s: %w", filepath.Join(kDir, e.name), err)
			}
			e.typ = modeType(uint32(st.Mode))
		}
		if ge.typ == typeUnknown {
			st, err := statAt(gfd, e.name)
			if err != nil {
				return fmt.Errorf("stat %s: %w", filepath.Join(gDir, e.name), err)
			}
			ge.typ = modeType(uint32(st.Mode))
		}
		if e.typ == typeDir && ge.typ == typeDir {
			if err := inheritedDir(ctx, filepath.Join(kDir, e.name), filepath.Join(gDir, e.name), total); err != nil {
				return err
			}
			continue
		}
		if e.typ != typeFile || ge.typ != typeFile || e.ino != ge.ino {
			continue
		}
		st, err := statAt(kfd, e.name)
		if err != nil {
			return fmt.Errorf("stat %s: %w", filepath.Join(kDir, e.name), err)
		}
		if uint64(st.Ino) == ge.ino && st.Nlink == 2 {
			*total += st.Size
		}
	}
	return nil
}
