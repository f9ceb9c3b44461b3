//go:build unix

package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// linkTree hard-links the tree src into the new folder dst. It works relative to open
// directory handles (linkat) and reads directories unsorted, which keeps a 200,000-file clone
// close to `cp -al`: no per-file path resolution from the root, no sorting. The top-level
// folders are linked by cloneWorkers goroutines at once. A file that cannot be linked (link
// limit reached) is copied instead.
func (s *Store) linkTree(ctx context.Context, src, dst string) error {
	workers := cloneWorkers
	if s.opts.fullScan {
		workers = 1
	}
	return s.linkTreeWorkers(ctx, src, dst, workers)
}

func (s *Store) linkTreeWorkers(ctx context.Context, src, dst string, workers int) error {
	hook := func() { s.hook("clone") }
	if workers <= 1 {
		return linkDir(ctx, src, dst, hook, nil)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type job struct{ src, dst string }
	jobs := make(chan job)
	var (
		wg    sync.WaitGroup
		errMu sync.Mutex
		first error
	)
	fail := func(err error) {
		errMu.Lock()
		defer errMu.Unlock()
		if first == nil {
			first = err
			cancel()
		}
	}
	for range workers {
		wg.Go(func() {
			for j := range jobs {
				if err := linkDir(ctx, j.src, j.dst, hook, nil); err != nil {
					fail(err)
				}
			}
		})
	}
	err := linkDir(ctx, src, dst, hook, func(src, dst string) bool {
		select {
		case jobs <- job{src, dst}:
			return true
		case <-ctx.Done():
			return false
		}
	})
	close(jobs)
	wg.Wait()
	if first != nil {
		return first
	}
	return err
}

// linkSubtree hard-links the folder src into dst (made if missing), relative to open
// directory handles as linkTree does.
func linkSubtree(ctx context.Context, src, dst string, hook func()) error {
	return linkDir(ctx, src, dst, hook, nil)
}

// linkDir links the folder src into the new folder dst. With spawn set, subfolders are handed
// to it (it returns false when the clone is being abandoned) instead of linked here.
func linkDir(ctx context.Context, src, dst string, hook func(), spawn func(src, dst string) bool) error {
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
	entries, err := sd.ReadDir(-1)
	if err != nil {
		return fmt.Errorf("clone: %w", err)
	}
	sfd, dfd := int(sd.Fd()), int(dd.Fd())
	for i, e := range entries {
		name := e.Name()
		switch t := e.Type(); {
		case t.IsDir():
			s, d := filepath.Join(src, name), filepath.Join(dst, name)
			if spawn != nil {
				if !spawn(s, d) {
					return ctx.Err()
				}
			} else if err := linkDir(ctx, s, d, hook, nil); err != nil {
				return err
			}
			continue
		case t&os.ModeSymlink != 0:
			link, err := os.Readlink(filepath.Join(src, name))
			if err != nil {
				return fmt.Errorf("clone: %w", err)
			}
			if err := os.Symlink(link, filepath.Join(dst, name)); err != nil {
				return fmt.Errorf("clone: %w", err)
			}
			continue
		case !t.IsRegular():
			continue // sockets, devices: never part of a backup
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
