package engine

import (
	"context"
	"path/filepath"
	"time"

	"snapback/internal/backupfmt"
	"snapback/internal/mobilebackup2"
)

// describeUnreadable fills Domain and RelativePath of files the device could not read from
// the backup's Manifest.db (by fileID). An encrypted or unreadable Manifest.db leaves them
// empty: the device's own name for the file is still reported.
func describeUnreadable(ctx context.Context, dir string, files []mobilebackup2.UnreadableFile) {
	db, err := backupfmt.OpenManifestDB(filepath.Join(dir, backupfmt.ManifestDBName))
	if err != nil {
		return
	}
	defer db.Close()
	want := make(map[string]int, len(files))
	for i, f := range files {
		want[f.FileID] = i
	}
	_ = db.Each(ctx, func(r backupfmt.Record) error {
		if i, ok := want[r.FileID]; ok {
			files[i].Domain, files[i].RelativePath = r.Domain, r.RelativePath
		}
		return nil
	})
}

func cancelWindow(d time.Duration) time.Duration {
	switch {
	case d == 0:
		return mobilebackup2.DefaultPasscodeCancelWindow
	case d < 0:
		return 0
	}
	return d
}

func busyRetries(n int) int {
	switch {
	case n == 0:
		return 6
	case n < 0:
		return 0
	}
	return n
}

func busyWait(d time.Duration) time.Duration {
	if d <= 0 {
		return 10 * time.Second
	}
	return d
}
