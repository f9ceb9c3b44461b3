// Package atomicfile writes files so that a reader, or a crash at any instant, sees either the
// old content or the new content, never a mix: temp file in the same directory, write, fsync,
// close, rename over the target, fsync the directory.
package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// WriteFile atomically replaces path with data, created with perm.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return write(path, perm, dataFill(data), true)
}

// Write atomically replaces path with whatever fill writes. If fill fails nothing changes.
func Write(path string, perm os.FileMode, fill func(io.Writer) error) error {
	return write(path, perm, fill, true)
}

// WriteFileFlushedLater replaces path with data as WriteFile does, temp file and rename, so a
// reader sees the old content or the new and an existing file (in the store's staging folder,
// a hard link to committed content) is never written into. It leaves the fsyncs to a SyncFS
// of the whole filesystem, which must come before anything relies on the file: for a folder
// thrown away after a crash before that. Where SyncFS does nothing (HaveSyncFS false) it
// syncs as WriteFile does, so the file is never less durable than the caller's flush makes
// everything else.
func WriteFileFlushedLater(path string, data []byte, perm os.FileMode) error {
	return write(path, perm, dataFill(data), !HaveSyncFS)
}

func dataFill(data []byte) func(io.Writer) error {
	return func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	}
}

func write(path string, perm os.FileMode, fill func(io.Writer) error, durable bool) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("atomic write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = f.Chmod(perm); err != nil {
		return fmt.Errorf("atomic write %s: %w", path, err)
	}
	if err = fill(f); err != nil {
		return fmt.Errorf("atomic write %s: %w", path, err)
	}
	if durable {
		if err = f.Sync(); err != nil {
			return fmt.Errorf("atomic write %s: sync: %w", path, err)
		}
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("atomic write %s: close: %w", path, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("atomic write %s: %w", path, err)
	}
	if !durable {
		return nil
	}
	return SyncDir(dir)
}

// SyncDir fsyncs a directory so that a rename or create inside it is durable. Filesystems
// that cannot sync directories (EINVAL/ENOTSUP, e.g. some FUSE and Windows) are tolerated.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOTSUP) {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}
