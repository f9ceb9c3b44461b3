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
	"snapback/internal/diskspace"
)

// Volume is the identity of a destination, kept in Snapback.Versions/volume.json and in the
// host's list of known destinations. The app also keeps it in the run state (Run.Volume).
type Volume struct {
	ID       string     `json:"id"`       // random, chosen at first use
	FS       string     `json:"fs"`       // human-readable FSIdentity at first use
	Identity FSIdentity `json:"identity"` // filesystem identity at first use
	Location string     `json:"location"` // the folder chosen in settings, at first use
	Created  time.Time  `json:"created"`  // first use
}

// expected is what the caller or this host knows the destination must be: the volume ID and,
// when known, its filesystem.
type expected struct {
	id     string
	fs     FSIdentity
	source string // who knows: "settings", "this computer", "this session"
}

func (s *Store) expectation() (expected, error) {
	if s.opts.ExpectVolumeID != "" {
		return expected{id: s.opts.ExpectVolumeID, source: "the run state"}, nil
	}
	d, ok, err := lookupKnown(s.knownPath, s.dir)
	if err != nil {
		return expected{}, err
	}
	if ok && d.Forgotten {
		// Released by the user (snapback location forget), also for a daemon that has seen
		// the old disk.
		s.seenVolume, s.seenFS = "", FSIdentity{}
		return expected{}, nil
	}
	if s.seenVolume != "" {
		return expected{id: s.seenVolume, fs: s.seenFS, source: "this session"}, nil
	}
	if !ok {
		return expected{}, nil
	}
	return expected{id: d.Volume.ID, fs: d.Volume.Identity, source: "this computer"}, nil
}

// checkVolume is the volume guard; it runs before anything reads or writes below the
// location. With init set (a backup is about to start) a destination without a marker is
// initialised, unless it was used before (the caller's ExpectVolumeID, the host's list of
// known destinations, or a marker this Store saw earlier): then its disk is missing and the
// run is refused before anything is written. Without init a destination without a marker is
// just empty.
func (s *Store) checkVolume(init bool) (*Volume, error) {
	s.volMu.Lock()
	defer s.volMu.Unlock()
	exp, err := s.expectation()
	if err != nil {
		return nil, err
	}
	v, err := readVolume(s.l.volume())
	if err == nil {
		if exp.id != "" && v.ID != exp.id {
			return nil, s.diskMissing(
				fmt.Sprintf("the folder holds backup volume %s, not %s recorded by %s (another disk is mounted there)", v.ID, exp.id, exp.source),
				"connect the disk that holds your backups; to back up to this disk instead, run snapback location forget "+s.dir)
		}
		cur, ierr := fsIdentity(s.l.versions())
		if ierr == nil && !v.Identity.zero() {
			if same, why := sameFS(v.Identity, cur); !same {
				// The marker travelled with the data (disk cloned, folder copied to a new
				// disk by the user): the backups are here, so this is the destination. Said
				// once, and the new filesystem is remembered from now on.
				s.log.Warn("backup destination moved to another filesystem with its data", "location", s.l.root, "was", why)
			}
		}
		if s.seenVolume == "" {
			s.seenVolume, s.seenFS = v.ID, cur
		}
		if init {
			s.remember(v, cur)
		}
		return &v, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read volume identity: %w", err)
	}
	if exp.id != "" && !s.deletedOnSameDisk(exp) {
		cause := fmt.Sprintf("volume %s was first used here", exp.id)
		if !exp.fs.zero() {
			cause += " on " + exp.fs.String()
		}
		if cur, err := fsIdentity(existingParent(s.l.root)); err == nil && !exp.fs.zero() {
			cause += "; the folder is now on " + cur.String()
		}
		cause += ", and its marker " + s.l.volume() + " is not there"
		return nil, s.diskMissing(cause,
			"connect and mount the backup disk, then try again; to start backing up to a new disk in the same place, run snapback location forget "+s.dir)
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
			return nil, s.diskMissing(fmt.Sprintf("its parent folder %s does not exist", parent),
				"connect the backup disk, or choose another location in settings")
		}
		if err := os.MkdirAll(s.l.root, 0o755); err != nil {
			return nil, s.classify(fmt.Errorf("create backup location: %w", err), 0)
		}
	}
	if err := os.MkdirAll(s.l.versions(), 0o755); err != nil {
		return nil, s.classify(fmt.Errorf("create %s: %w", s.l.versions(), err), 0)
	}
	ident, err := fsIdentity(s.l.versions())
	if err != nil {
		return nil, fmt.Errorf("volume identity: %w", err)
	}
	nv := Volume{ID: randomHex(16), FS: ident.String(), Identity: ident, Location: s.dir, Created: s.now().UTC()}
	b, _ := json.MarshalIndent(nv, "", "  ")
	if err := atomicfile.WriteFile(s.l.volume(), append(b, '\n'), 0o644); err != nil {
		return nil, s.classify(fmt.Errorf("write volume identity: %w", err), 0)
	}
	s.seenVolume, s.seenFS = nv.ID, ident
	s.remember(nv, ident)
	s.log.Info("initialised backup destination", "location", s.l.root, "volume", nv.ID, "fs", nv.FS)
	return &nv, nil
}

// remember records the destination in the host's list (best effort: the marker on the disk
// is already written; without the list only ExpectVolumeID protects the next run).
func (s *Store) remember(v Volume, cur FSIdentity) {
	if s.knownPath == "" {
		return
	}
	if d, ok, err := lookupKnown(s.knownPath, s.dir); err == nil && ok && !d.Forgotten && d.Volume.ID == v.ID && d.Root == s.l.root &&
		s.now().Sub(d.Seen) < time.Hour {
		return
	}
	v.Identity = cur
	v.FS = cur.String()
	err := updateKnown(s.knownPath, func(m map[string]KnownDestination) {
		m[s.dir] = KnownDestination{Dir: s.dir, Root: s.l.root, Volume: v, Seen: s.now().UTC()}
	})
	if err != nil {
		s.log.Warn("could not remember the backup destination", "location", s.dir, "err", err)
	}
}

func (s *Store) diskMissing(cause, fix string) error {
	return classified(&DiskError{Location: s.dir, Cause: cause, Fix: fix})
}

// deletedOnSameDisk reports a destination whose marker is gone although the folder is on the
// very filesystem recorded for it, by a strong identity (UUID, or a UUID-derived fsid): the
// user deleted the backups (or the OS data folder), the disk is not missing, and starting
// afresh is what they asked for. A weak identity (device number and mount point) cannot tell
// a new USB stick in the same slot from the old one, so it never allows this.
func (s *Store) deletedOnSameDisk(exp expected) bool {
	if exp.fs.zero() {
		return false
	}
	cur, err := fsIdentity(existingParent(s.l.root))
	if err != nil {
		return false
	}
	strong := (exp.fs.UUID != "" && exp.fs.UUID == cur.UUID) ||
		(exp.fs.UUID == "" && stableFSID[exp.fs.Type] && exp.fs.Type == cur.Type && exp.fs.FSID == cur.FSID)
	if strong {
		s.log.Warn("the backups at this location were removed; starting afresh on the same disk", "location", s.dir, "fs", cur.String())
		s.seenVolume = ""
	}
	return strong
}

// existingParent is the nearest folder of p that exists.
func existingParent(p string) string {
	for {
		if _, err := os.Stat(p); err == nil || filepath.Dir(p) == p {
			return p
		}
		p = filepath.Dir(p)
	}
}

// refuseUnmounted refuses a location that is, or lies below, a mount point listed in the
// system's mount table whose filesystem is not mounted right now: writing there would fill
// the parent disk with a backup the user thinks is on the external one. This guards a first
// use only; a location used before is guarded by its recorded identity.
func (s *Store) refuseUnmounted() error {
	targets := s.opts.mountTargets()
	for dir := s.l.root; ; dir = filepath.Dir(dir) {
		if targets[dir] {
			if _, err := os.Stat(dir); err == nil {
				if mp, err := isMountPoint(dir); err == nil && !mp {
					return s.diskMissing(fmt.Sprintf("%s is a mount point with nothing mounted on it", dir),
						"mount the backup disk, then try again")
				}
			}
		}
		if filepath.Dir(dir) == dir {
			return nil
		}
	}
}

func readVolume(path string) (Volume, error) {
	v, err := readJSON[Volume](path, "volume marker")
	if err != nil {
		return v, err
	}
	if v.ID == "" {
		return v, fmt.Errorf("%s: no volume id", path)
	}
	return v, nil
}

// freeBytes is the space available to this (unprivileged) user below dir, measured as the
// protocol measures it for the device (diskspace.Free).
func freeBytes(dir string) (int64, error) { return diskspace.Free(dir) }
