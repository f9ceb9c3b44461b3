//go:build unix && !linux

package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// linkSubtree hard-links the folder src into dst (made if missing). It works relative to open
// directory handles (linkat) and reads directories unsorted, which keeps a 200,000-file clone
// close to `cp -al`: no per-file path resolution from the root, no sorting. A file that
// cannot be linked (link limit reached) is copied instead. Linux has its own, which links
// straight from the kernel's directory records (linktree_linux.go).
func linkSubtree(ctx context.Context, src, dst string, hook func()) error {
	if err := os.Mkdir(dst, 0o755); err != nil && !os.IsExist(err) {
		return fmt.Errorf("clone: %w", err)
	}
	sd, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("clone: %w", err)
	}
	defer sd.Close()
	dd, err := os.Open(dst)
	if err != nil {
		return fmt.Errorf("clone: %w", err)
	}
	defer dd.Close()
	entries, err := listTypes(src)
	if err != nil {
		return fmt.Errorf("clone: %w", err)
	}
	sfd, dfd := int(sd.Fd()), int(dd.Fd())
	for i, e := range entries {
		name := e.name
		t := e.typ
		if t != typeFile && t != typeDir {
			// Symlinks, and entries whose type the filesystem did not say: ask. Never in a
			// backup Snapback wrote, so this costs nothing in practice.
			var err error
			if t, err = linkOther(sfd, src, dst, name); err != nil {
				return err
			}
			if t == typeOther {
				continue
			}
		}
		if t == typeDir {
			if err := linkSubtree(ctx, filepath.Join(src, name), filepath.Join(dst, name), hook); err != nil {
				return err
			}
			continue
		}
		if i%256 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		hook()
		if err := unix.Linkat(sfd, name, dfd, name, 0); err != nil {
			if err := copyFile(filepath.Join(src, name), filepath.Join(dst, name)); err != nil {
				return err
			}
		}
	}
	return nil
}
