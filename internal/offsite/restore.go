package offsite

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"snapback/internal/store"
)

// RestoreResult says what Restore brought back.
type RestoreResult struct {
	Dir      string   // the restored backup folder, <to>/<UDID>
	Snapshot Snapshot // the restic snapshot it came from
}

// Restore brings udid's restic snapshot which (see Find) back into the folder to as a
// standard Apple backup folder <to>/<UDID>/ that Finder, iTunes, idevicebackup2 and
// `snapback restore --dir` accept. restic writes into a hidden folder beside it; the
// backup is verified like any backup (Status.plist finished, Info.plist names the device,
// Manifest.db opens and every file row has its blob) and only then renamed into place. A
// backup that fails verification is removed and reported (KindInvalidBackup); an existing
// <to>/<UDID> is never touched.
func Restore(ctx context.Context, r *Restic, udid, which, to string) (RestoreResult, error) {
	var res RestoreResult
	if _, err := r.CheckVersion(ctx); err != nil {
		return res, err
	}
	snaps, err := r.Snapshots(ctx, udid)
	if err != nil {
		return res, err
	}
	sn, err := Find(snaps, udid, which)
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			e.Repository = r.Repository
		}
		return res, err
	}
	res.Snapshot = sn
	dst := filepath.Join(to, udid)
	if _, err := os.Lstat(dst); err == nil {
		return res, fmt.Errorf("off-site restore: %s already exists; to fix: choose another --to folder, or move it away first", dst)
	}
	if err := os.MkdirAll(to, 0o755); err != nil {
		return res, fmt.Errorf("off-site restore: %w", err)
	}
	partial := filepath.Join(to, "."+udid+".offsite-partial-"+randomHex(4))
	defer os.RemoveAll(partial)
	if err := r.run(ctx, &call{op: "restore", args: []string{"restore", sn.ID, "--target", partial}}); err != nil {
		return res, err
	}
	got := filepath.Join(partial, udid)
	if err := store.VerifyFolder(ctx, got, udid); err != nil {
		return res, newError("restore", KindInvalidBackup, r.Repository,
			fmt.Sprintf("snapshot %s is not a complete backup: %v", sn.ShortID, err), err)
	}
	// The store keeps committed files read-only; a restored folder is the user's to change.
	if err := filepath.WalkDir(got, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		return os.Chmod(p, 0o644)
	}); err != nil {
		return res, fmt.Errorf("off-site restore: %w", err)
	}
	if err := os.Rename(got, dst); err != nil {
		return res, fmt.Errorf("off-site restore: %w", err)
	}
	syncDir(to)
	res.Dir = dst
	return res, nil
}

// syncDir makes a rename in dir durable; best effort (not every platform can fsync a folder).
func syncDir(dir string) {
	if f, err := os.Open(dir); err == nil {
		f.Sync()
		f.Close()
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
