package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"snapback/internal/atomicfile"
)

// Volume is the identity of a destination, kept in Snapback.Versions/volume.json. Callers
// persist ID after the first backup and pass it back as Options.ExpectVolumeID: that is what
// lets the store tell "disk not mounted" from "first use" when the marker is missing.
type Volume struct {
	ID      string    `json:"id"`      // random, chosen at first use
	FS      string    `json:"fs"`      // filesystem identity at first use (device, fsid or serial)
	Created time.Time `json:"created"` // first use
}

// checkVolume is the volume guard; it runs before anything reads or writes below the
// location. With init set (a backup is about to start) a destination without a marker is
// initialised — unless the caller expects one, or the path is a mount point with nothing
// mounted on it. Without init a destination without a marker is just empty.
//
// Once a Store has seen a marker it expects that volume for the rest of its life, even when
// the caller passed no ExpectVolumeID: a disk unplugged while the app runs is then refused
// instead of being mistaken for a first use of an empty folder.
func (s *Store) checkVolume(init bool) (*Volume, error) {
	s.volMu.Lock()
	defer s.volMu.Unlock()
	expect := s.opts.ExpectVolumeID
	if expect == "" {
		expect = s.seenVolume
	}
	v, err := readVolume(s.l.volume())
	if err == nil {
		if expect != "" && v.ID != expect {
			return nil, &DiskError{Location: s.l.root,
				Cause: fmt.Sprintf("the folder holds backup volume %s, not the expected %s (another disk is mounted there)", v.ID, expect),
				Fix:   "connect the disk that holds your backups, or choose this location again in settings"}
		}
		if cur, err := fsIdentity(s.l.versions()); err == nil && cur != v.FS {
			// The marker travelled with the data (disk cloned, folder copied, device numbers
			// renumbered at boot): the data is here, so this is the destination.
			s.log.Info("backup destination is on a different filesystem than first recorded", "location", s.l.root, "was", v.FS, "now", cur)
		}
		s.seenVolume = v.ID
		return &v, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read volume identity: %w", err)
	}
	if expect != "" {
		return nil, &DiskError{Location: s.l.root,
			Cause: fmt.Sprintf("its identity marker %s for volume %s is missing, so the disk is not mounted or the folder is now an empty mount point", s.l.volume(), expect),
			Fix:   "connect and mount the backup disk, then try again (or choose a new location in settings)"}
	}
	if !init {
		return nil, nil
	}
	if err := s.refuseUnmounted(); err != nil {
		return nil, err
	}
	if _, err := os.Stat(s.l.root); errors.Is(err, fs.ErrNotExist) {
		parent := filepath.Dir(s.l.root)
		if _, perr := os.Stat(parent); perr != nil && !s.opts.CreateLocation {
			return nil, &DiskError{Location: s.l.root,
				Cause: fmt.Sprintf("its parent folder %s does not exist", parent),
				Fix:   "connect the backup disk, or choose another location in settings"}
		}
		if err := os.MkdirAll(s.l.root, 0o755); err != nil {
			return nil, fmt.Errorf("create backup location: %w", err)
		}
	}
	if err := os.MkdirAll(s.l.versions(), 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", s.l.versions(), err)
	}
	ident, err := fsIdentity(s.l.versions())
	if err != nil {
		return nil, fmt.Errorf("volume identity: %w", err)
	}
	nv := Volume{ID: randomHex(16), FS: ident, Created: s.now().UTC()}
	b, _ := json.MarshalIndent(nv, "", "  ")
	if err := atomicfile.WriteFile(s.l.volume(), append(b, '\n'), 0o644); err != nil {
		return nil, err
	}
	s.seenVolume = nv.ID
	s.log.Info("initialised backup destination", "location", s.l.root, "volume", nv.ID, "fs", ident)
	return &nv, nil
}

// refuseUnmounted refuses a location that is, or lies below, a mount point listed in the
// system's mount table whose filesystem is not mounted right now: writing there would fill
// the parent disk with a backup the user thinks is on the external one.
func (s *Store) refuseUnmounted() error {
	targets := s.opts.mountTargets()
	for dir := s.l.root; ; dir = filepath.Dir(dir) {
		if targets[dir] {
			if _, err := os.Stat(dir); err == nil {
				if mp, err := isMountPoint(dir); err == nil && !mp {
					return &DiskError{Location: s.l.root,
						Cause: fmt.Sprintf("%s is a mount point with nothing mounted on it", dir),
						Fix:   "mount the backup disk, then try again"}
				}
			}
		}
		if filepath.Dir(dir) == dir {
			return nil
		}
	}
}

func readVolume(path string) (Volume, error) {
	var v Volume
	b, err := os.ReadFile(path)
	if err != nil {
		return v, err
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return v, fmt.Errorf("%s: %w", path, err)
	}
	if v.ID == "" {
		return v, fmt.Errorf("%s: no volume id", path)
	}
	return v, nil
}
