package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"snapback/internal/atomicfile"
	"snapback/internal/backupfmt"
	"snapback/internal/failure"
)

// BeginOptions describe the run about to start.
type BeginOptions struct {
	// ExpectedBytes is the engine's estimate of what the device will send; 0 if unknown. The
	// free-space check asks for it plus Options.MinFreeBytes.
	ExpectedBytes int64
	// Full starts from an empty staging folder (a forced full backup) instead of a clone of
	// the latest backup.
	Full bool
	// CloneInBackground returns once the run is set up and clones the latest backup into
	// the staging folder on goroutines of the Run: the caller must not touch the folder's
	// top-level files before Run.RootReady returned nil, nor anything under a top-level
	// folder before Run.EntryReady of its name did (engine.Request.RootReady, EntryReady).
	// A device's connection, app list, encryption check and sync lock take seconds, and the
	// device uploads into its own Snapshot/ folder before it moves files into the prefix
	// folders: the clone (one link per file, about 1.5 s of kernel time per 100,000 files on
	// ext4) happens meanwhile instead of before them (bgclone.go).
	CloneInBackground bool
}

// CommitMeta is what the engine knows about a finished run that the folder does not say.
type CommitMeta struct {
	// Kind overrides the kind read from Status.plist IsFullBackup (KindFull or KindIncremental).
	Kind Kind
	// Exceptions are files the device could not read during the run (it sent an error block
	// and went on; pymobiledevice3 #755): their blob may be missing or short, and the
	// snapshot records them instead of failing verification.
	Exceptions []Exception
}

// Run is one backup run of one device: it holds the device lock from Begin until Commit or
// Abort. Its methods may be called from any goroutine, but the engine must not be writing
// into Root while Commit or Abort runs.
type Run struct {
	s      *Store
	udid   string
	lock   *deviceLock
	full   bool
	method CloneMethod

	notes    []string // what Begin found and did on its own, kept in the record
	streamed streamedHashes

	mu   sync.Mutex
	done bool

	// clone is the clone in the background (BeginOptions.CloneInBackground), nil otherwise.
	clone *bgClone
}

// Ready waits until the whole staging folder is cloned: at once unless Begin was asked to
// clone in the background. The error is the clone's, classified.
func (r *Run) Ready(ctx context.Context) error {
	if r.clone == nil {
		return nil
	}
	return r.cloneErr(r.clone.wait(ctx))
}

// RootReady waits until the staging backup folder's top-level files (Manifest.db,
// Status.plist …) are cloned: at once unless Begin was asked to clone in the background.
func (r *Run) RootReady(ctx context.Context) error {
	if r.clone == nil {
		return nil
	}
	return r.cloneErr(r.clone.rootReady(ctx))
}

// EntryReady waits until the top-level entry name of the staging backup folder (a prefix
// folder such as "3f", a file such as "Manifest.db") may be read or written: at once unless
// Begin was asked to clone in the background, and then only as long as it takes to clone
// that entry, not the whole folder (see bgClone). name "" waits for the whole folder.
func (r *Run) EntryReady(ctx context.Context, name string) error {
	if r.clone == nil {
		return nil
	}
	return r.cloneErr(r.clone.entryReady(ctx, name))
}

// cloneErr classifies a failure of the background clone; a cancelled wait is returned as is.
func (r *Run) cloneErr(err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return r.s.classify(fmt.Errorf("prepare staging for %s: %w", r.udid, err), 0)
}

// stopClone stops a background clone and waits for its goroutines.
func (r *Run) stopClone() {
	if r.clone != nil {
		r.clone.stop()
	}
}

// Notes says what Begin found and did on its own (an external backup recorded, a damaged
// latest backup replaced by a full one); the commit keeps them in the record.
func (r *Run) Notes() []string { return r.notes }

// Root is the folder whose <UDID>/ subfolder is the staging backup the engine writes into
// (the engine's backup root). The engine must replace files by writing a new file and
// renaming it over the old name, never by writing in place: staging files may be hard links
// to committed snapshots.
func (r *Run) Root() string { return r.s.l.staging(r.udid) }

// Dir is the staging backup folder itself, Root()/<UDID>.
func (r *Run) Dir() string { return r.s.l.stagingBackup(r.udid) }

// UDID is the device this run backs up.
func (r *Run) UDID() string { return r.udid }

// Method is how the staging folder shares files with the latest backup.
func (r *Run) Method() CloneMethod { return r.method }

// Begin starts a backup run of udid: it checks the destination (volume guard), takes the
// device lock (ErrLocked if a live process holds it), completes or discards interrupted work,
// checks free space (ErrInsufficientSpace) and prepares the staging folder as a clone of the
// latest backup. On error nothing is left locked and no committed snapshot has changed.
func (s *Store) Begin(ctx context.Context, udid string, opts BeginOptions) (*Run, error) {
	r, err := s.begin(ctx, udid, opts)
	return r, s.classify(err, opts.ExpectedBytes)
}

func (s *Store) begin(ctx context.Context, udid string, opts BeginOptions) (_ *Run, err error) {
	if err := validUDID(udid); err != nil {
		return nil, err
	}
	if _, err := s.checkVolume(true); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(s.l.snapshots(udid), 0o755); err != nil {
		return nil, fmt.Errorf("begin backup of %s: %w", udid, err)
	}
	lk, err := s.acquireLock(udid)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			lk.release()
		}
	}()
	if err := s.recoverDevice(ctx, udid); err != nil {
		return nil, err
	}
	// Before adoptLatest, which may measure the latest folder by its links.
	haveNext, err := s.dropStaleNext(udid)
	if err != nil {
		return nil, err
	}
	latest, notes, err := s.adoptLatest(ctx, udid)
	if err != nil {
		return nil, err
	}
	if latest != nil && len(latest.Damaged) > 0 && !opts.Full {
		// Cloning would carry the damaged files into the new backup and the device, seeing
		// them in the manifest, would not send them again: start empty so it sends all.
		s.log.Warn("the latest backup has damaged files; this backup is a full one", "udid", udid,
			"snapshot", latest.ID, "damaged", len(latest.Damaged))
		opts.Full = true
		notes = append(notes, fmt.Sprintf("the latest backup %s had %d damaged files, so this backup is a full one", latest.ID, len(latest.Damaged)))
	}
	method, err := s.CloneMethod()
	if err != nil {
		return nil, err
	}
	need := opts.ExpectedBytes
	if s.opts.MinFreeBytes > 0 {
		need += s.opts.MinFreeBytes
	}
	if method == CloneCopy && latest != nil && !opts.Full {
		need += latest.TotalSize
	}
	free, err := freeBytes(s.l.device(udid))
	if err != nil {
		return nil, fmt.Errorf("free space check: %w", err)
	}
	if free < need {
		return nil, &SpaceError{Location: s.l.root, Free: free, Need: need}
	}
	s.hook("begin")
	if err := os.Mkdir(s.l.staging(udid), 0o755); err != nil {
		return nil, fmt.Errorf("create staging: %w", err)
	}
	r := &Run{s: s, udid: udid, lock: lk, full: opts.Full || latest == nil, method: method, notes: notes}
	if haveNext && latest != nil && !opts.Full && method == CloneHardlink && !s.opts.fullScan {
		// PrepareNext cloned the latest already (next.go): nothing to clone, nothing to wait for.
		if err := s.takeNext(udid); err != nil {
			if rerr := os.RemoveAll(s.l.staging(udid)); rerr != nil {
				s.log.Warn("remove staging after a failed start", "err", rerr)
			}
			return nil, fmt.Errorf("prepare staging for %s: %w", udid, err)
		}
		s.hook("begin:cloned")
		return r, nil
	}
	if haveNext {
		// A full backup starts empty: the prepared clone is of no use.
		if err := s.dropNext(udid); err != nil {
			return nil, err
		}
	}
	if latest != nil && !opts.Full && opts.CloneInBackground {
		// The Run owns the clone's goroutines: Ready and EntryReady wait for it, Commit and
		// Abort stop it. A crash meanwhile leaves a staging folder, which recovery removes as
		// after any crash.
		r.clone = s.startClone(ctx, s.l.latest(udid), s.l.stagingBackup(udid), method, s.cloneWorkers())
		return r, nil
	}
	if latest != nil && !opts.Full {
		err = s.cloneTree(ctx, s.l.latest(udid), s.l.stagingBackup(udid), method)
	} else {
		err = os.Mkdir(s.l.stagingBackup(udid), 0o755)
	}
	if err != nil {
		// Best effort: a crash here is handled the same way by the next recovery.
		if rerr := os.RemoveAll(s.l.staging(udid)); rerr != nil {
			s.log.Warn("remove staging after failed clone", "err", rerr)
		}
		return nil, fmt.Errorf("prepare staging for %s: %w", udid, err)
	}
	s.hook("begin:cloned")
	return r, nil
}

// journal records a commit in progress. It names the new record in full so that recovery can
// finish the commit without the run that started it.
type journal struct {
	Op     string   `json:"op"`   // "commit"
	Prev   string   `json:"prev"` // ID of the latest backup being moved to snapshots/, "" if none
	Record Snapshot `json:"record"`
	// PrevSizes are the previous latest's sizes once Record is the latest, when the commit
	// computed them from what the run changed; without them recovery measures its folder.
	PrevSizes *usage `json:"prevSizes,omitempty"`
}

// Commit verifies the staging backup and makes it the latest; the previous latest becomes a
// snapshot. It returns the new snapshot's record. If verification fails the run stays open
// and nothing changed (the caller decides: Abort, usually). Once the journal is written the
// run is over either way: a later error is completed by recovery at the next Begin or Open.
func (r *Run) Commit(ctx context.Context, meta CommitMeta) (Snapshot, error) {
	snap, err := r.commit(ctx, meta)
	var ve *VerifyError
	if errors.As(err, &ve) {
		// What the device left in staging is not a complete backup: the run is incomplete,
		// nothing committed is damaged.
		return snap, &failure.Error{Class: failure.Incomplete, Cause: err}
	}
	return snap, r.s.classify(err, 0)
}

func (r *Run) commit(ctx context.Context, meta CommitMeta) (Snapshot, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done {
		return Snapshot{}, ErrRunFinished
	}
	if err := r.Ready(ctx); err != nil {
		return Snapshot{}, err
	}
	s, udid := r.s, r.udid
	dir := s.l.stagingBackup(udid)
	// The engine leaves flushing staging to this commit (mobilebackup2's DeferSync), so the
	// wait for the disk, 0.2-0.3 s after a 100,000-file incremental, overlaps the verification
	// below, which reads only what the page cache holds anyway. It must end before the
	// journal makes staging the latest backup.
	flushed := beside(func() (struct{}, error) { return struct{}{}, atomicfile.SyncFS(dir) })
	defer flushed() // every path waits for the goroutine
	exc, err := s.carriedExceptions(udid, meta.Exceptions)
	if err != nil {
		return Snapshot{}, err
	}
	recs, err := readRecords(s.l.snapshots(udid))
	if err != nil {
		return Snapshot{}, err
	}
	var prev, last string
	var prevRec Snapshot
	if n := len(recs); n > 0 {
		last = recs[n-1].ID
		if exists(s.l.latest(udid)) {
			prev, prevRec = last, recs[n-1]
		}
	}
	// What this run changed, when the staging folder is a hard-link clone of a recorded
	// latest backup (delta.go); otherwise every file is verified, measured and indexed.
	var d *delta
	var facts backupFacts
	verified := false
	if prev != "" && !r.full && r.method == CloneHardlink && !s.opts.fullScan && !exists(s.l.snapshot(udid, prev)) {
		if d, facts, err = s.diffVerify(ctx, dir, s.l.latest(udid), udid, exceptionIDs(exc), prevRec.FileCount); err != nil {
			return Snapshot{}, err
		}
		verified = true
	}
	streamed := r.streamed.table()
	// A full or first backup: staging started empty, so every file in it was written by this
	// run. One listing pass stats each file once and indexes it (fullcommit.go) instead of a
	// stat in verify, another in measure and a third walk for the content index.
	var fresh *freshTally
	switch {
	case verified:
	case r.full && !s.opts.fullScan && canListInodes:
		s.hook("commit:fresh")
		facts, fresh, err = s.verifyFresh(ctx, dir, udid, exceptionIDs(exc), max(prevRec.FileCount, len(streamed.e)), streamed)
	default:
		facts, err = s.verifyBackupDelta(ctx, dir, udid, exceptionIDs(exc), nil)
	}
	if err != nil {
		return Snapshot{}, err
	}
	exc = keepExcepted(exc, facts.Excepted)
	s.hook("commit:verified")
	var u usage
	var prevSizes *usage
	if fresh != nil {
		if u, prevSizes, err = fresh.sizes(ctx, dir, prev, prevRec); err != nil {
			return Snapshot{}, err
		}
		s.hook("commit:measured") // marked read-only and indexed by the listing pass
	} else if d != nil {
		// Marks the written files read-only, before they become committed content.
		var pu usage
		if u, pu, err = d.apply(ctx, dir, prevRec); err != nil {
			return Snapshot{}, err
		}
		prevSizes = &pu
		s.hook("commit:measured")
		err = s.indexWritten(ctx, udid, dir, d, streamed)
		if errors.Is(err, errNoIndex) {
			s.log.Warn("content index missing or unreadable; rebuilding it", "udid", udid)
			_, _, err = s.indexNewFiles(ctx, udid, dir, streamed)
		}
		if err != nil {
			return Snapshot{}, err
		}
	} else {
		// Measuring also marks every staged file read-only, before it becomes committed content.
		if u, err = measure(ctx, dir, true); err != nil {
			return Snapshot{}, err
		}
		s.hook("commit:measured")
		// Hash what this run wrote while it is still in the page cache; shared files are
		// indexed already.
		if _, _, err := s.indexNewFiles(ctx, udid, dir, streamed); err != nil {
			return Snapshot{}, err
		}
	}
	s.hook("commit:indexed")
	if err := s.compactHashesIfStale(ctx, udid, recs, u, dir); err != nil {
		return Snapshot{}, err
	}
	kind := meta.Kind
	if kind == "" {
		kind = KindIncremental
		if facts.Full || r.full {
			kind = KindFull
		}
	}
	now := s.now()
	rec := Snapshot{Fingerprint: fingerprint(dir), Notes: r.notes,
		ID: newID(now, last), UDID: udid, Time: now.UTC(), Kind: kind, Device: facts.Device,
		Encrypted: facts.Encrypted, FileCount: u.Files, TotalSize: u.Total, UniqueSize: u.Unique,
		Exceptions: exc,
	}
	if _, err := flushed(); err != nil {
		return Snapshot{}, fmt.Errorf("commit %s: %w", udid, err)
	}
	s.hook("commit:flushed")
	j := journal{Op: "commit", Prev: prev, Record: rec, PrevSizes: prevSizes}
	b, _ := json.MarshalIndent(j, "", "  ")
	if err := atomicfile.WriteFile(s.l.journal(udid), b, 0o644); err != nil {
		return Snapshot{}, fmt.Errorf("commit %s: %w", udid, err)
	}
	r.done = true
	r.streamed.free() // the journal holds what recovery needs; nothing reads the sums now
	defer r.lock.release()
	s.hook("commit:journal")
	if err := s.rollForward(ctx, udid, j); err != nil {
		return Snapshot{}, fmt.Errorf("commit %s: %w (recovery completes it at the next run)", udid, err)
	}
	rec.Latest, rec.Path = true, s.l.latest(udid)
	return rec, nil
}

// Abort discards the staging folder and releases the lock. It is idempotent. After a Commit
// that failed past its journal, Abort lets recovery finish that commit instead.
func (r *Run) Abort() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done {
		return nil
	}
	r.done = true
	r.stopClone()
	r.streamed.free()
	// Cleanup must run even when the caller's context is already cancelled.
	err := r.s.recoverDevice(context.Background(), r.udid)
	return errors.Join(err, r.lock.release())
}

// rollForward performs the commit steps of j. Each step checks whether it already happened,
// so running it again after a crash at any point converges on the committed state.
func (s *Store) rollForward(ctx context.Context, udid string, j journal) error {
	latest, staged := s.l.latest(udid), s.l.stagingBackup(udid)
	prevDir := ""
	if j.Prev != "" {
		prevDir = s.l.snapshot(udid, j.Prev)
	}
	if prevDir != "" && exists(latest) && exists(staged) && !exists(prevDir) {
		if err := renameDurable(latest, prevDir); err != nil {
			return fmt.Errorf("move latest backup to snapshot %s: %w", j.Prev, err)
		}
		s.hook("commit:moved-latest")
	}
	switch {
	case exists(staged) && exists(latest):
		return fmt.Errorf("both %s and %s exist; leaving them for inspection", staged, latest)
	case exists(staged):
		if err := renameDurable(staged, latest); err != nil {
			return fmt.Errorf("move staging to latest: %w", err)
		}
		s.hook("commit:moved-staging")
	case !exists(latest):
		// The staged backup vanished before it became the latest (deleted by hand): put the
		// old latest back and forget the commit.
		if prevDir != "" && exists(prevDir) {
			if err := renameDurable(prevDir, latest); err != nil {
				return fmt.Errorf("roll back latest backup: %w", err)
			}
		}
		s.log.Error("staged backup disappeared before commit; rolled back", "udid", udid, "snapshot", j.Record.ID)
		return removeFile(s.l.journal(udid))
	}
	recPath := s.l.record(udid, j.Record.ID)
	if !exists(recPath) {
		if err := writeRecord(recPath, j.Record); err != nil {
			return err
		}
		s.hook("commit:record")
	}
	// Committed. The rest is housekeeping that recovery repeats if it is interrupted.
	if prevDir != "" && exists(prevDir) {
		// The new latest replaced some of the old one's files, which are now its alone.
		var err error
		if j.PrevSizes != nil {
			err = s.setSizes(udid, j.Prev, *j.PrevSizes)
		} else {
			err = s.refreshSizes(ctx, udid, j.Prev)
		}
		if err != nil {
			return err
		}
		s.hook("commit:refreshed")
	}
	if err := os.RemoveAll(s.l.staging(udid)); err != nil {
		return fmt.Errorf("remove staging: %w", err)
	}
	s.hook("commit:cleaned")
	return removeFile(s.l.journal(udid))
}

// recoverDevice finishes an interrupted commit, removes the staging folder of a run that
// never reached its journal, and reconciles records with folders. The caller holds the lock.
func (s *Store) recoverDevice(ctx context.Context, udid string) error {
	b, err := os.ReadFile(s.l.journal(udid))
	switch {
	case err == nil:
		var j journal
		if err := json.Unmarshal(b, &j); err != nil || j.Op != "commit" || !validID(j.Record.ID) {
			// atomicfile never leaves a torn journal, so this is damage from outside.
			return fmt.Errorf("journal %s is unreadable; inspect it and remove it by hand: %v", s.l.journal(udid), err)
		}
		s.log.Warn("completing interrupted commit", "udid", udid, "snapshot", j.Record.ID)
		if err := s.rollForward(ctx, udid, j); err != nil {
			return fmt.Errorf("recover commit of %s: %w", udid, err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("read journal: %w", err)
	}
	if exists(s.l.staging(udid)) {
		s.log.Info("removing staging folder of an unfinished run", "udid", udid)
		if err := os.RemoveAll(s.l.staging(udid)); err != nil {
			return fmt.Errorf("remove staging: %w", err)
		}
	}
	if _, ok := s.readNext(udid); !ok && exists(s.l.next(udid)) {
		s.log.Info("removing an unfinished prepared folder", "udid", udid)
		if err := s.dropNext(udid); err != nil {
			return err
		}
	}
	return s.reconcile(udid)
}

// reconcile removes snapshot folders without a record (a Delete that forgot the record and
// then crashed) and forgets records whose folder is gone, and leftover temp files.
func (s *Store) reconcile(udid string) error {
	dir := s.l.snapshots(udid)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reconcile %s: %w", udid, err)
	}
	recs, err := readRecords(dir)
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, r := range recs {
		have[r.ID] = true
	}
	var errs []error
	for _, e := range entries {
		name := e.Name()
		path := filepath.Join(dir, name)
		switch {
		case e.IsDir() && validID(name) && !have[name]:
			s.log.Info("removing snapshot folder without record", "udid", udid, "snapshot", name)
			errs = append(errs, os.RemoveAll(path))
		case !e.IsDir() && len(name) > 0 && name[0] == '.':
			errs = append(errs, removeFile(path)) // temp file of an interrupted atomic write
		}
	}
	for i, r := range recs {
		isLatest := i == len(recs)-1 && exists(s.l.latest(udid)) && !exists(s.l.snapshot(udid, r.ID))
		if isLatest || exists(s.l.snapshot(udid, r.ID)) {
			continue
		}
		s.log.Error("snapshot folder is missing; forgetting its record", "udid", udid, "snapshot", r.ID)
		errs = append(errs, removeFile(s.l.record(udid, r.ID)))
	}
	return errors.Join(errs...)
}

// adoptLatest gives a record to a latest backup folder that has none (a MobileSync folder
// made by Finder or idevicebackup2, or a Snapback store whose records were lost), so that it
// is kept as a snapshot instead of being overwritten. It returns the latest record, nil if
// there is no latest backup.
func (s *Store) adoptLatest(ctx context.Context, udid string) (*Snapshot, []string, error) {
	latest := s.l.latest(udid)
	fi, err := os.Stat(latest)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("latest backup: %w", err)
	}
	recs, err := readRecords(s.l.snapshots(udid))
	if err != nil {
		return nil, nil, err
	}
	last := ""
	if n := len(recs); n > 0 {
		last = recs[n-1].ID
		if !exists(s.l.snapshot(udid, last)) {
			rec := recs[n-1]
			if rec.Fingerprint == "" || fingerprint(latest) == rec.Fingerprint {
				return &rec, nil, nil
			}
			return s.adoptExternal(ctx, udid, rec)
		}
	}
	facts, verr := s.verifyBackup(ctx, latest, udid)
	if verr != nil && !errors.As(verr, new(*VerifyError)) {
		return nil, nil, verr
	}
	if verr != nil {
		s.log.Warn("adopting an existing backup folder that is not complete", "udid", udid, "err", verr)
	}
	t := fi.ModTime()
	if st, err := backupfmt.ReadStatus(filepath.Join(latest, backupfmt.StatusPlistName)); err == nil && !st.Date.IsZero() {
		t = st.Date
	}
	u, err := measure(ctx, latest, true)
	if err != nil {
		return nil, nil, err
	}
	if _, _, err := s.indexNewFiles(ctx, udid, latest, sumTable{}); err != nil {
		return nil, nil, err
	}
	rec := Snapshot{ID: newID(t, last), UDID: udid, Time: t.UTC(), Kind: KindAdopted, Device: facts.Device,
		Encrypted: facts.Encrypted, FileCount: u.Files, TotalSize: u.Total, UniqueSize: u.Unique, Fingerprint: fingerprint(latest)}
	if err := writeRecord(s.l.record(udid, rec.ID), rec); err != nil {
		return nil, nil, err
	}
	s.log.Info("adopted existing backup folder", "udid", udid, "snapshot", rec.ID)
	return &rec, nil, nil
}

// refreshSizes re-measures a snapshot (whose sharing changed because a neighbour was added
// or deleted) and rewrites its record.
func (s *Store) refreshSizes(ctx context.Context, udid, id string) error {
	u, err := measure(ctx, s.snapshotDir(udid, id), false)
	if err != nil {
		return err
	}
	return s.setSizes(udid, id, u)
}

// setSizes writes u into the record of snapshot id if they differ.
func (s *Store) setSizes(udid, id string, u usage) error {
	path := s.recordPath(udid, id)
	rec, err := readRecord(path)
	if err != nil {
		return fmt.Errorf("refresh sizes of %s: %w", id, err)
	}
	if rec.TotalSize == u.Total && rec.UniqueSize == u.Unique && rec.FileCount == u.Files {
		return nil
	}
	rec.TotalSize, rec.UniqueSize, rec.FileCount = u.Total, u.Unique, u.Files
	if err := writeRecord(path, rec); err != nil {
		if failure.FromOS(err).Class == failure.NoSpace {
			// Sizes are a display matter; a full disk must not stop the deletion that frees
			// it. They are measured again after the next commit or deletion.
			s.log.Warn("snapshot sizes not updated: the backup disk is full", "udid", udid, "snapshot", id)
			return nil
		}
		return err
	}
	return nil
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func removeFile(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// renameDurable renames and fsyncs both parent directories, so the move survives power loss
// before the next step depends on it.
func renameDurable(from, to string) error {
	if err := os.Rename(from, to); err != nil {
		return err
	}
	if err := atomicfile.SyncDir(filepath.Dir(to)); err != nil {
		return err
	}
	if filepath.Dir(from) != filepath.Dir(to) {
		return atomicfile.SyncDir(filepath.Dir(from))
	}
	return nil
}
