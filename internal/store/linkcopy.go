package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// View is a caller's own, stable copy of one committed snapshot, made of hard links where the
// filesystem has them: however long the caller reads it, a commit or a retention run cannot
// move or delete what it holds, and nothing in the store writes a committed file in place
// (see the package comment), so it stays byte-for-byte the snapshot. Close removes it.
type View struct {
	// Dir is the backup folder, named after the UDID.
	Dir string
	// Snapshot is the record of the snapshot it copies.
	Snapshot Snapshot
	root     string
}

// Close removes the view. Its files are links to committed files; the snapshots keep theirs.
func (v *View) Close() error {
	if err := os.RemoveAll(v.root); err != nil {
		return fmt.Errorf("remove view %s: %w", v.root, err)
	}
	return nil
}

// viewsDir is where views for purpose live: below the device's folder, so on the same
// filesystem as the snapshots (hard links work) and never read as a backup.
func (l layout) viewsDir(udid, purpose string) string {
	return filepath.Join(l.device(udid), "views-"+purpose)
}

// OpenView makes a View of the snapshot or archive id of udid ("latest" for the latest
// backup) for purpose (e.g. "offsite"). It holds the device lock while it links, so a commit
// cannot move the latest backup away half-way. Views left by processes of this host that have
// died (a reader killed mid-way) are removed first; each view has its own folder, so two
// readers never disturb each other.
func (s *Store) OpenView(ctx context.Context, udid, id, purpose string) (*View, error) {
	if purpose == "" || strings.ContainsAny(purpose, `/\`) {
		return nil, fmt.Errorf("view: bad purpose %q", purpose)
	}
	var v *View
	err := s.withLock(udid, func() error {
		sn, err := s.Get(udid, id)
		if err != nil {
			return err
		}
		dir := s.l.viewsDir(udid, purpose)
		s.removeDeadViews(dir)
		root := filepath.Join(dir, fmt.Sprintf("%s-%d-%s", s.host, s.pid, randomHex(4)))
		if err := os.MkdirAll(root, 0o700); err != nil {
			return fmt.Errorf("view: %w", err)
		}
		if err := s.cloneTree(ctx, sn.Path, filepath.Join(root, udid), CloneHardlink); err != nil {
			os.RemoveAll(root)
			return fmt.Errorf("view of %s: %w", sn.ID, err)
		}
		v = &View{Dir: filepath.Join(root, udid), Snapshot: sn, root: root}
		return nil
	})
	return v, err
}

// removeDeadViews removes the views in dir whose process (on this host) has exited.
func (s *Store) removeDeadViews(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	prefix := s.host + "-"
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok {
			continue // another host's: it may still be reading
		}
		pidText, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || processAlive(pid) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			s.log.Warn("remove view of a dead process", "dir", e.Name(), "err", err)
		}
	}
}

// VerifyFolder checks a backup folder outside any store as Commit checks a run (Status.plist
// finished, Info.plist names udid, Manifest.db opens read-only and every file row has a blob
// of its recorded size). Use it before trusting a backup brought back from elsewhere. A
// problem is a *VerifyError.
func VerifyFolder(ctx context.Context, dir, udid string) error {
	var s Store // verification only reads; it needs no location
	_, err := s.verifyBackup(ctx, dir, udid)
	return err
}
