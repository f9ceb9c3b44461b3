package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// Options configure a Store. The zero value is usable: Open fills in the wall clock and the
// defaults documented on each field.
type Options struct {
	// Now is the clock. Snapshot IDs, lock times and retention ages come from it.
	Now func() time.Time
	// Logger receives operational messages; nil discards them.
	Logger *slog.Logger
	// ExpectVolumeID is the Volume.ID the caller recorded when it last used this destination.
	// When set, a missing or different marker is ErrDiskNotConnected instead of a first use.
	ExpectVolumeID string
	// Known is the host's list of backup destinations it has used (see KnownDestination):
	// "" is destinations.json in the OS state folder, "-" none (then only ExpectVolumeID tells
	// a missing disk from a first use).
	Known string
	// CreateLocation allows creating the location and its missing parents at first use (for
	// the OS data folder). Otherwise the location's parent must exist, so that an absent
	// disk's mount path is never filled with a backup.
	CreateLocation bool
	// LockStaleAfter is the age after which any device lock counts as abandoned. Default 24h,
	// longer than any real backup.
	LockStaleAfter time.Duration
	// MinFreeBytes is kept free on the destination beyond what a run needs. Default 64 MiB;
	// negative disables the margin.
	MinFreeBytes int64
	// Clone forces a clone method instead of probing the filesystem (tests, benchmarks).
	Clone CloneMethod
	// Fstab is the mount table consulted for unmounted mount points; default /etc/fstab on
	// Linux, "-" for none.
	Fstab string

	// hook is called at named points of every long or critical operation; tests use it to
	// inject crashes.
	hook func(point string)
	// fullScan runs as before issue #16: the clone links one folder at a time and every
	// commit verifies, measures and indexes the whole staging folder. BenchmarkCommitIncremental
	// compares both ways.
	fullScan bool
	// serialVerify makes every incremental commit compare the listings before it reads the
	// rows, as backups above maxConcurrentVerify files do (tests cover both ways).
	serialVerify bool
}

func (o Options) mountTargets() map[string]bool {
	switch o.Fstab {
	case "-":
		return nil
	case "":
		return fstabTargets(defaultFstab)
	}
	return fstabTargets(o.Fstab)
}

// Store is an open backup location. See the package comment for the layout and guarantees.
type Store struct {
	opts Options
	l    layout
	log  *slog.Logger
	now  func() time.Time
	host string
	pid  int

	probeMu sync.Mutex
	method  CloneMethod

	dir       string // the folder chosen in settings, absolute; the key of the host's list
	knownPath string

	volMu      sync.Mutex
	seenVolume string     // ID of the volume marker this Store has seen; expected from then on
	seenFS     FSIdentity // its filesystem then

	// hookMu makes test hook calls one at a time: the clone's workers, the listings and the
	// row pass call it from several goroutines, and crash tests count the calls.
	hookMu sync.Mutex
}

// Open opens the store at the destination folder dir (see ResolveLocation) and recovers every
// device whose lock is free: unfinished commits are completed, leftovers of crashed runs
// removed. Open writes nothing when the destination was never used. A destination whose disk
// is missing gives ErrDiskNotConnected. When only recovery fails, Open returns the Store (fine
// for listing) together with the error; Begin retries the recovery.
func Open(ctx context.Context, dir string, opts Options) (*Store, error) {
	abs, err := filepath.Abs(dir)
	if err != nil || dir == "" {
		return nil, fmt.Errorf("backup location %q: invalid folder", dir)
	}
	// A location used before keeps the store folder recorded for it, so that the path does
	// not depend on whether its disk is mounted right now: <mnt>/Snapback.Backups while
	// mounted would otherwise become <mnt> itself when the mount point is empty.
	var root string
	if d, ok, kerr := lookupKnown(opts.knownPath(), abs); kerr != nil {
		return nil, kerr
	} else if ok && !d.Forgotten && d.Root != "" {
		root = d.Root
	} else if root, err = ResolveLocation(abs); err != nil {
		return nil, err
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.LockStaleAfter <= 0 {
		opts.LockStaleAfter = 24 * time.Hour
	}
	if opts.MinFreeBytes == 0 {
		opts.MinFreeBytes = 64 << 20
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	host, _ := os.Hostname()
	s := &Store{opts: opts, l: layout{root}, log: log.With("component", "store"), now: opts.Now, host: host, pid: os.Getpid(), method: opts.Clone,
		dir: abs, knownPath: opts.knownPath()}
	if _, err := s.checkVolume(false); err != nil {
		return nil, err
	}
	if err := s.Recover(ctx); err != nil {
		return s, err
	}
	return s, nil
}

// Location is the folder holding <UDID>/ and Snapback.Versions/.
func (s *Store) Location() string { return s.l.root }

// LatestDir is the folder of the latest backup of udid (which may not exist yet).
func (s *Store) LatestDir(udid string) string { return s.l.latest(udid) }

// Volume returns the destination's identity; callers persist its ID (Options.ExpectVolumeID).
func (s *Store) Volume() (Volume, error) {
	v, err := s.checkVolume(false)
	if err != nil {
		return Volume{}, err
	}
	if v == nil {
		return Volume{}, fmt.Errorf("destination %s not initialised yet: %w", s.l.root, fs.ErrNotExist)
	}
	return *v, nil
}

// Devices lists the UDIDs that have a snapshot history here.
func (s *Store) Devices() ([]string, error) {
	entries, err := os.ReadDir(s.l.versions())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && validUDID(e.Name()) == nil {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}

// Recover completes or discards interrupted work for every device not locked by a live run.
func (s *Store) Recover(ctx context.Context) error {
	if v, err := s.checkVolume(false); err != nil || v == nil {
		return err
	}
	devs, err := s.Devices()
	if err != nil {
		return err
	}
	var errs []error
	for _, udid := range devs {
		if err := ctx.Err(); err != nil {
			return err
		}
		lk, err := s.acquireLock(udid)
		if errors.Is(err, ErrLocked) {
			continue // a live run owns it and will clean up after itself
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, s.recoverDevice(ctx, udid), lk.release())
	}
	s.removePartialArchives()
	return errors.Join(errs...)
}

func (s *Store) hook(point string) {
	if s.opts.hook != nil {
		s.hookMu.Lock()
		defer s.hookMu.Unlock()
		s.opts.hook(point)
	}
}

// removePartialArchives deletes archive copies a crash interrupted; they were never recorded.
func (s *Store) removePartialArchives() {
	entries, err := os.ReadDir(s.l.root)
	if err != nil {
		return
	}
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() && strings.HasPrefix(n, ".") && strings.HasSuffix(n, ".partial") {
			if err := os.RemoveAll(s.l.root + string(os.PathSeparator) + n); err != nil {
				s.log.Warn("remove interrupted archive", "dir", n, "err", err)
			}
		}
	}
}
