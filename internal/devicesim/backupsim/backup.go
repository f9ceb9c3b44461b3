package backupsim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/zeebo/xxh3"

	"snapback/internal/backupfmt"
	"snapback/internal/devicelink"
	"snapback/internal/plistio"
)

// upload is one blob the device sends. The plan keeps only item indices (4 bytes per
// file) and rebuilds the rest on demand, so a million-file backup plans in a few MB.
type upload struct {
	index   int
	version uint32
	size    int64
	fileID  string
	domain  string
	rel     string
}

func (d *Device) upload(i int, v uint32) upload {
	it := genItem(d.opts.Seed, i)
	return upload{index: i, version: v, size: d.size(i, it.kind, v), fileID: backupfmt.FileID(it.domain, it.rel), domain: it.domain, rel: it.rel}
}

// backup runs one Backup request (protocol.md §7.9). A non-nil error means the link failed;
// otherwise res says how the request ends.
func (s *session) backup(ctx context.Context, req map[string]any) (st backupStats, res backupResult, err error) {
	d := s.d
	o := d.opts
	d.mu.Lock()
	s.q = d.quirksFor(d.counters.BackupRequests)
	d.mu.Unlock()
	q := s.q
	udid := o.Identity.UDID
	if t, ok := req["TargetIdentifier"].(string); ok && t != "" {
		udid = t
	}
	if udid != o.Identity.UDID {
		return st, backupResult{100, fmt.Sprintf("Unknown target identifier %q", udid)}, nil
	}
	force := false
	if opts, ok := req["Options"].(map[string]any); ok {
		force, _ = opts["ForceFullBackup"].(bool)
	}

	switch o.FailCode {
	case 0, 104, 105, 208:
	case 212:
		return st, backupResult{212, describe(212)}, nil
	default:
		return st, backupResult{o.FailCode, describe(o.FailCode)}, nil
	}
	if d.passcodeRequired() || o.FailCode == 208 {
		entered, err := s.passcode(ctx)
		if err != nil {
			return st, res, err
		}
		if !entered {
			return st, backupResult{208, describe(208)}, nil
		}
	}
	if o.Hostile {
		if err := s.hostileProbe(ctx, udid); err != nil {
			return st, res, err
		}
	}

	// The scan: silence before the first message.
	if err := sleepCtx(ctx, q.ScanDelay); err != nil {
		return st, res, err
	}

	scratch, err := d.tempDir()
	if err != nil {
		return st, backupResult{100, err.Error()}, nil
	}
	defer os.RemoveAll(scratch)

	// What does the host have? Status.plist first; an incremental needs a finished backup
	// whose UUID is the one this device remembers.
	var statusBuf limitedBuffer
	found, _, err := s.download(ctx, []string{udid + "/" + backupfmt.StatusPlistName}, func(int) io.Writer { return &statusBuf })
	if err != nil {
		return st, res, err
	}
	d.mu.Lock()
	last, prev := d.lastUUID, d.last
	d.mu.Unlock()
	st.full = true
	if found[0] && !force {
		if hs, perr := backupfmt.ParseStatus(statusBuf.Bytes()); perr == nil &&
			hs.SnapshotState == backupfmt.SnapshotFinished && last != "" && hs.UUID == last {
			st.full = false
		}
	}
	if st.full || prev == nil || prev.uuid != last {
		prev = nil // nothing the device remembers describes the host's backup
	}

	vers := d.snapshotVersions()
	have := make([]uint64, (len(vers)+63)/64) // bit i: the host already has item i as it is now
	var removals []string                     // fileIDs of host blobs the device no longer has
	if !st.full {
		var plistBuf limitedBuffer
		dbPath := filepath.Join(scratch, "host-Manifest.db")
		dbFile, err := os.Create(dbPath)
		if err != nil {
			return st, backupResult{100, err.Error()}, nil
		}
		dbHash := xxh3.New()
		dbSink := &capWriter{w: io.MultiWriter(dbFile, dbHash), left: maxHostDB}
		found, _, err := s.download(ctx,
			[]string{udid + "/" + backupfmt.ManifestPlistName, udid + "/" + backupfmt.ManifestDBName},
			func(i int) io.Writer {
				if i == 0 {
					return &plistBuf
				}
				return dbSink
			})
		cerr := dbFile.Close()
		if err != nil {
			return st, res, err
		}
		if !found[0] || plistBuf.Len() == 0 {
			return st, backupResult{205, describe(205)}, nil
		}
		hm, perr := backupfmt.ParseManifest(plistBuf.Bytes())
		if perr != nil {
			return st, backupResult{205, describe(205)}, nil
		}
		usable := found[1] && cerr == nil && dbSink.err == nil
		dbSum := dbHash.Sum128().Bytes()
		hostM := hostManifest{hm.IsEncrypted, hm.BackupKeyBag, hm.ManifestKey}
		if usable && prev.matches(d, last, dbSum, hostM) {
			// The host holds exactly the device's last backup: what changed is known.
			removals = d.diffFromLast(prev, vers, have)
		} else if usable {
			prev = nil // the host's database is not the one the device uploaded
			var plainDB string
			if plainDB, usable = d.openHostDB(hostM, dbPath, scratch); usable {
				removals, err = d.diff(ctx, plainDB, vers, have)
			}
		}
		if !usable || err != nil {
			// Without a readable database there is nothing to diff against: back up fully.
			st.full = true
			clear(have)
			removals = nil
		}
	}

	// Plan the upload.
	var plan []int32
	var total int64
	var prefixes [256]bool
	for i, v := range vers {
		if v == 0 || have[i/64]&(1<<(i%64)) != 0 {
			continue
		}
		if genKind(o.Seed, i) == kindSymlink {
			continue // only regular files have blobs
		}
		u := d.upload(i, v)
		plan = append(plan, int32(i))
		total += u.size
		prefixes[hexByte(u.fileID)] = true
	}
	var hostile []backupfmt.Record
	if o.Hostile {
		hostile = hostileRecords()
		for _, r := range hostile {
			prefixes[hexByte(r.FileID)] = true
		}
	}

	// Space check; the host may be asked to purge, and Debian's idevicebackup2 never answers.
	// BackupAgent2 wants the upload size plus 128 MiB headroom (pymobiledevice3 PR #1886,
	// MBDriveBackupEngine _prepareFreeSpace).
	honest := total + int64(len(vers))*512 + 128<<20
	required := o.RequiredFreeSpace
	if required <= 0 {
		required = honest
	}
	if q.PurgeDemand > 0 {
		required = q.PurgeDemand
	}
	free, err := s.freeSpace(ctx)
	if err != nil {
		return st, res, err
	}
	if o.FailCode == 105 {
		free = min(free, required/2) // injected: act as if the host reported too little
	}
	if free < required {
		// The amount asked overstates the need by a flat 2 GiB (pymobiledevice3 PR #1886).
		answered, err := s.purge(ctx, required-free+2<<30)
		if err != nil {
			return st, res, err
		}
		if answered && o.FailCode != 105 {
			if free, err = s.freeSpace(ctx); err != nil {
				return st, res, err
			}
			if q.PurgeDemand > 0 && free >= honest {
				// The host says it made room: the inflated estimate is dropped and what the
				// upload really needs decides.
				required = honest
			}
		}
		if free < required {
			return st, backupResult{105, fmt.Sprintf("%s (have %d bytes, need %d)", describe(105), free, required)}, nil
		}
	}

	// Directories: Snapshot, its prefixes, and the final prefixes MoveItems renames into
	// (hosts rename without creating parents).
	dirs := []string{udid + "/" + backupfmt.SnapshotDirName}
	for p, used := range prefixes {
		if used {
			dirs = append(dirs, fmt.Sprintf("%s/%s/%02x", udid, backupfmt.SnapshotDirName, p), fmt.Sprintf("%s/%02x", udid, p))
		}
	}
	for _, dir := range dirs {
		code, err := s.simple(ctx, devicelink.CreateDirectory, dir)
		if err != nil {
			return st, res, err
		}
		if code != 0 {
			return st, backupResult{100, fmt.Sprintf("Error creating directory %s (host status %d)", dir, code)}, nil
		}
	}

	// Blobs. With Quirks.FileErrors, files spread over the plan fail mid-upload.
	// The unreadable files are always the same ones (iOS 17 fails on the same FileProvider
	// database every time); they fail whenever they are part of the upload.
	failing := map[int32]bool{}
	if q.FileErrors > 0 {
		inPlan := make(map[int32]bool, len(plan))
		for _, i := range plan {
			inPlan[i] = true
		}
		for k := 1; k <= q.FileErrors; k++ {
			// Spread over the original content (Options.Files), so added files never move them.
			for i := (k * min(o.Files, len(vers))) / (q.FileErrors + 1); i < len(vers); i++ {
				if vers[i] != 0 && genKind(o.Seed, i) != kindSymlink && !failing[int32(i)] {
					if inPlan[int32(i)] {
						failing[int32(i)] = true
					}
					break
				}
			}
		}
	}
	var sentContent int64
	stopped := false
	prog := progress{total: total}
	for start := 0; start < len(plan); {
		batch := make([]upload, 0, min(maxBatchFiles, len(plan)-start))
		var bytes int64
		for end := start; end < len(plan) && len(batch) < maxBatchFiles; end++ {
			u := d.upload(int(plan[end]), vers[plan[end]])
			if len(batch) > 0 && bytes+u.size > maxBatchBytes {
				break
			}
			batch = append(batch, u)
			bytes += u.size
		}
		code, err := s.uploadBatch(ctx, &prog, func(emit func(devName, hostName string, r io.Reader) error) error {
			for _, u := range batch {
				if q.LockAfter > 0 && sentContent >= q.LockAfter {
					stopped = true // the screen locked: BackupAgent2 stops this batch
					return nil
				}
				var r io.Reader = d.blob(u.index, u.version, u.size)
				if failing[int32(u.index)] {
					r = remoteFailure{r: r, after: u.size / 2, text: errTextIO}
					st.fileErrors++
				}
				if err := emit(u.domain+"/"+u.rel, blobName(udid, u.fileID, true), r); err != nil {
					return err
				}
				sentContent += u.size
			}
			return nil
		})
		if err != nil {
			return st, res, err
		}
		st.files += int64(len(batch))
		st.bytes += bytes
		if code != 0 || stopped {
			return st, backupResult{104, "Multiple errors uploading files"}, nil
		}
		start += len(batch)
	}
	if len(hostile) > 0 {
		if _, err := s.uploadBatch(ctx, &prog, func(emit func(string, string, io.Reader) error) error {
			for _, r := range hostile {
				if err := emit(r.Domain+"/"+r.RelativePath, blobName(udid, r.FileID, true), bytes.NewReader([]byte(hostileBody))); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return st, res, err
		}
	}

	// Metadata: Manifest.db (real SQLite), Manifest.plist, Status.plist (not yet finished).
	st.uuid = newUUID()
	dbPath := filepath.Join(scratch, backupfmt.ManifestDBName)
	d.mu.Lock()
	own := d.last
	d.mu.Unlock()
	if own != nil && own.db != "" && bytes.Equal(own.bag, d.bag) {
		// The device's own database of its last backup, updated where items changed.
		err = d.updateManifestDB(ctx, own, dbPath, vers)
	} else {
		err = d.writeManifestDB(ctx, dbPath, vers, hostile)
	}
	if err != nil {
		return st, backupResult{100, err.Error()}, nil
	}
	st.last = &lastBackup{uuid: st.uuid, vers: vers, bag: d.bag, db: d.keepManifestDB(dbPath)}
	uploaded := xxh3.New()
	now := d.now()
	uploadDB, manifestKey := dbPath, []byte(nil)
	if d.keys != nil {
		uploadDB = dbPath + ".encrypted"
		if manifestKey, err = d.encryptManifestDB(dbPath, uploadDB); err != nil {
			return st, backupResult{100, err.Error()}, nil
		}
	}
	manifest, err := d.manifestPlist(now, manifestKey).Marshal()
	if err != nil {
		return st, backupResult{100, err.Error()}, nil
	}
	moving, err := backupfmt.Status{BackupState: "new", Date: now, IsFullBackup: st.full, SnapshotState: "moving", UUID: st.uuid, Version: "3.3"}.Marshal()
	if err != nil {
		return st, backupResult{100, err.Error()}, nil
	}
	snap := udid + "/" + backupfmt.SnapshotDirName + "/"
	code, err := s.uploadBatch(ctx, &prog, func(emit func(string, string, io.Reader) error) error {
		f, err := os.Open(uploadDB)
		if err != nil {
			return fmt.Errorf("open generated Manifest.db: %w", err)
		}
		defer f.Close()
		if err := emit("Manifest.db", snap+backupfmt.ManifestDBName, io.TeeReader(f, uploaded)); err != nil {
			return err
		}
		if err := emit("Manifest.plist", snap+backupfmt.ManifestPlistName, bytes.NewReader(manifest)); err != nil {
			return err
		}
		return emit("Status.plist", snap+backupfmt.StatusPlistName, bytes.NewReader(moving))
	})
	if err != nil {
		return st, res, err
	}
	if code != 0 {
		return st, backupResult{104, "Multiple errors uploading files"}, nil
	}
	st.last.dbSum = uploaded.Sum128().Bytes()

	// Move everything from Snapshot to its final place.
	moves := make(map[string]any, maxMoveBatch)
	flush := func() (int64, error) {
		if len(moves) == 0 {
			return 0, nil
		}
		code, err := s.simple(ctx, devicelink.MoveItems, moves, map[string]any{}, 100.0)
		moves = make(map[string]any, maxMoveBatch)
		return code, err
	}
	add := func(src, dst string) (int64, error) {
		moves[src] = dst
		if len(moves) >= maxMoveBatch {
			return flush()
		}
		return 0, nil
	}
	for _, i := range plan {
		if failing[i] {
			continue // never landed in Snapshot
		}
		u := d.upload(int(i), vers[i])
		if code, err := add(blobName(udid, u.fileID, true), blobName(udid, u.fileID, false)); err != nil || code != 0 {
			return st, moveFailed(code), err
		}
	}
	for _, r := range hostile {
		if code, err := add(blobName(udid, r.FileID, true), blobName(udid, r.FileID, false)); err != nil || code != 0 {
			return st, moveFailed(code), err
		}
	}
	for _, name := range []string{backupfmt.ManifestDBName, backupfmt.ManifestPlistName, backupfmt.StatusPlistName} {
		if code, err := add(snap+name, udid+"/"+name); err != nil || code != 0 {
			return st, moveFailed(code), err
		}
	}
	if code, err := flush(); err != nil || code != 0 {
		return st, moveFailed(code), err
	}

	// Remove blobs of deleted files, then the Snapshot folder.
	for start := 0; start < len(removals); start += maxMoveBatch {
		chunk := removals[start:min(start+maxMoveBatch, len(removals))]
		paths := make([]any, len(chunk))
		for j, id := range chunk {
			paths[j] = blobName(udid, id, false)
		}
		if _, err := s.simple(ctx, devicelink.RemoveItems, paths, map[string]any{}, 100.0); err != nil {
			return st, res, err
		}
		st.removed += int64(len(chunk))
	}
	if o.FailCode == 104 {
		// What a device reports when the host could not delete Snapshot; the folder stays.
		return st, backupResult{104, describe(104)}, nil
	}
	code, err = s.simple(ctx, devicelink.RemoveItems, []any{udid + "/" + backupfmt.SnapshotDirName}, map[string]any{}, 100.0)
	if err != nil {
		return st, res, err
	}
	if code != 0 {
		return st, backupResult{104, describe(104)}, nil
	}

	// Done: the final Status.plist is the commit point hosts look for.
	finished, err := backupfmt.Status{BackupState: "new", Date: now, IsFullBackup: st.full, SnapshotState: backupfmt.SnapshotFinished, UUID: st.uuid, Version: "3.3"}.Marshal()
	if err != nil {
		return st, backupResult{100, err.Error()}, nil
	}
	code, err = s.uploadBatch(ctx, &prog, func(emit func(string, string, io.Reader) error) error {
		return emit("Status.plist", udid+"/"+backupfmt.StatusPlistName, bytes.NewReader(finished))
	})
	if err != nil {
		return st, res, err
	}
	if code != 0 {
		return st, backupResult{104, "Multiple errors uploading files"}, nil
	}
	return st, backupResult{}, nil
}

func moveFailed(code int64) backupResult {
	return backupResult{100, fmt.Sprintf("Error moving files into place (host status %d)", code)}
}

func hexByte(fileID string) int {
	var v int
	for _, c := range fileID[:2] {
		v <<= 4
		switch {
		case c >= '0' && c <= '9':
			v |= int(c - '0')
		case c >= 'a' && c <= 'f':
			v |= int(c-'a') + 10
		}
	}
	return v
}

// diff reads the host's Manifest.db: it marks in have every item the host already holds in
// its current version and returns the fileIDs of host blobs the device no longer has. Memory
// is one bit per item plus the removal list.
func (d *Device) diff(ctx context.Context, dbPath string, vers []uint32, have []uint64) ([]string, error) {
	db, err := backupfmt.OpenManifestDB(dbPath)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	var removals []string
	err = db.Each(ctx, func(r backupfmt.Record) error {
		if r.Flags == backupfmt.FlagDir {
			return nil
		}
		i, ok := itemIndex(d.opts.Seed, r.Domain, r.RelativePath)
		if ok && i < len(vers) && vers[i] != 0 {
			cur := d.record(i, vers[i], false)
			if cur.FileID == r.FileID && cur.Flags == r.Flags && cur.File.Size == r.File.Size &&
				cur.File.LastModified == r.File.LastModified && cur.File.Mode == r.File.Mode && cur.File.Target == r.File.Target {
				have[i/64] |= 1 << (i % 64)
			}
			return nil // changed files are overwritten by the move, not removed
		}
		if r.Flags == backupfmt.FlagFile && backupfmt.ValidFileID(r.FileID) {
			removals = append(removals, r.FileID)
		}
		return nil
	})
	return removals, err
}

// writeManifestDB generates the device's Manifest.db: directories, then every live item,
// then (hostile mode) the escaping rows. Rows are streamed into SQLite.
func (d *Device) writeManifestDB(ctx context.Context, path string, vers []uint32, hostile []backupfmt.Record) error {
	w, err := backupfmt.CreateManifestDB(path)
	if err != nil {
		return err
	}
	fail := func(err error) error {
		w.Close()
		return err
	}
	for _, it := range d.dirs {
		if err := w.Add(d.dirRecord(it)); err != nil {
			return fail(err)
		}
	}
	for i, v := range vers {
		if v == 0 {
			continue
		}
		if i%4096 == 0 && ctx.Err() != nil {
			return fail(ctx.Err())
		}
		if err := w.Add(d.record(i, v, true)); err != nil {
			return fail(err)
		}
	}
	for _, r := range hostile {
		if err := w.Add(r); err != nil {
			return fail(err)
		}
	}
	return w.Close()
}

func (d *Device) manifestPlist(now time.Time, manifestKey []byte) backupfmt.Manifest {
	id := d.opts.Identity
	apps := map[string]any{}
	for j, b := range appBundles {
		h := hash3(d.opts.Seed, uint64(j), 7)
		apps[b] = map[string]any{
			"CFBundleIdentifier":    b,
			"CFBundleVersion":       fmt.Sprintf("%d.%d", 1+h%9, h>>8%20),
			"ContainerContentClass": "Data/Application",
			"Path":                  fmt.Sprintf("/private/var/containers/Bundle/Application/%016X/%s.app", h, b[len(b)-min(len(b), 8):]),
		}
	}
	return backupfmt.Manifest{
		BackupKeyBag: d.backupKeyBag(),
		ManifestKey:  manifestKey,
		IsEncrypted:  d.WillEncrypt(),
		Lockdown: map[string]any{
			"BuildVersion": id.BuildVersion, "DeviceName": id.DeviceName, "ProductType": id.ProductType,
			"ProductVersion": id.ProductVersion, "SerialNumber": id.SerialNumber, "UniqueDeviceID": id.UDID,
			"com.apple.mobile.wireless_lockdown": map[string]any{"EnableWifiConnections": false},
		},
		Applications:         apps,
		Date:                 now,
		Version:              "10.0",
		SystemDomainsVersion: "24.0",
		WasPasscodeSet:       d.passcodeRequired(),
	}
}

// --- DeviceLink primitives ---

// simple sends a request that the host answers with one status response.
func (s *session) simple(ctx context.Context, name string, args ...any) (int64, error) {
	if err := s.c.WriteMessage(append([]any{name}, args...)...); err != nil {
		return 0, linkErr(err)
	}
	code, _, err := s.status(ctx)
	return code, err
}

// download asks the host for paths and streams file i into sink(i). It returns which files
// the host sent successfully and the host's status code.
func (s *session) download(ctx context.Context, paths []string, sink func(i int) io.Writer) ([]bool, int64, error) {
	list := make([]any, len(paths))
	for i, p := range paths {
		list[i] = p
	}
	if err := s.c.WriteMessage(devicelink.DownloadFiles, list, map[string]any{}, 0.0, uint64(0)); err != nil {
		return nil, 0, linkErr(err)
	}
	found := make([]bool, len(paths))
	for {
		name, err := s.c.ReadName()
		if errors.Is(err, devicelink.ErrStreamEnd) {
			break
		}
		if err != nil {
			return nil, 0, linkErr(err)
		}
		idx := -1
		for i, p := range paths {
			if p == name && !found[i] {
				idx = i
				break
			}
		}
		w := io.Discard
		if idx >= 0 {
			w = sink(idx)
		}
		fr, err := s.c.ReadFileBody(w)
		if errors.Is(err, devicelink.ErrStreamEnd) {
			break
		}
		if err != nil && fr.Code != devicelink.CodeSuccess {
			return nil, 0, linkErr(err)
		}
		// err with a SUCCESS code is the sink refusing (too large): the file is unusable.
		if idx >= 0 && fr.Code == devicelink.CodeSuccess && err == nil {
			found[idx] = true
		}
	}
	code, _, err := s.status(ctx)
	return found, code, err
}

// progress tracks the percentage reported in UploadFiles messages.
type progress struct{ done, total int64 }

func (p *progress) percent() float64 {
	if p.total <= 0 {
		return 100
	}
	return 100 * float64(p.done) / float64(p.total)
}

// uploadBatch sends one DLMessageUploadFiles with the files gen emits, ends the stream and
// returns the host's status code.
func (s *session) uploadBatch(ctx context.Context, p *progress, gen func(emit func(devName, hostName string, r io.Reader) error) error) (int64, error) {
	// libimobiledevice needs at least 4 elements, or it neither reads the stream nor replies.
	if err := s.c.WriteMessage(devicelink.UploadFiles, map[string]any{}, p.percent(), uint64(p.total)); err != nil {
		return 0, linkErr(err)
	}
	buf := make([]byte, devicelink.BlockSize)
	err := gen(func(devName, hostName string, r io.Reader) error {
		if err := s.c.WriteName(devName); err != nil {
			return linkErr(err)
		}
		if err := s.c.WriteName(hostName); err != nil {
			return linkErr(err)
		}
		if f, ok := r.(remoteFailure); ok {
			n, err := s.writeFailedFile(f, buf)
			p.done += n
			return err
		}
		n, err := s.c.WriteFileData(r, buf)
		p.done += n
		if err != nil {
			return linkErr(err)
		}
		return linkErr(s.c.WriteBlock(devicelink.CodeSuccess, nil))
	})
	if err != nil {
		return 0, err
	}
	if err := s.c.WriteTerminator(); err != nil {
		return 0, linkErr(err)
	}
	code, _, err := s.status(ctx)
	return code, err
}

// freeSpace asks the host how much space it has.
func (s *session) freeSpace(ctx context.Context) (int64, error) {
	if err := s.c.WriteMessage(devicelink.GetFreeDiskSpace); err != nil {
		return 0, linkErr(err)
	}
	code, m, err := s.status(ctx)
	if err != nil {
		return 0, err
	}
	free, ok := plistio.Int(m.Arg(3))
	if code != 0 || !ok {
		return 1 << 62, nil // the host cannot tell; go ahead like a device does
	}
	return free, nil
}

// purge asks the host to free bytes. It reports whether the host answered with success
// within PurgeTimeout; Debian's idevicebackup2 never answers at all.
func (s *session) purge(ctx context.Context, bytes int64) (bool, error) {
	s.d.mu.Lock()
	s.d.counters.PurgeRequests++
	s.d.mu.Unlock()
	if err := s.c.WriteMessage(devicelink.PurgeDiskSpace, uint64(max(bytes, 0)), uint64(4)); err != nil {
		return false, linkErr(err)
	}
	m, err := s.read(ctx, s.d.opts.PurgeTimeout)
	if errors.Is(err, errReadTimeout) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if m.Name() != devicelink.StatusResponse {
		return false, linkErr(fmt.Errorf("expected %s after PurgeDiskSpace, host sent %s", devicelink.StatusResponse, m.Name()))
	}
	code, _ := plistio.Int(m.Arg(1))
	return code == 0, nil
}

// limitedBuffer collects a small file (a plist) and refuses more than maxSmallFile bytes.
type limitedBuffer struct{ bytes.Buffer }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > maxSmallFile {
		return 0, fmt.Errorf("file larger than %d bytes", maxSmallFile)
	}
	return b.Buffer.Write(p)
}

// capWriter writes at most left bytes to w and remembers the first error.
type capWriter struct {
	w    io.Writer
	left int64
	err  error
}

func (c *capWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if int64(len(p)) > c.left {
		c.err = errors.New("host file exceeds the size limit")
		return 0, c.err
	}
	n, err := c.w.Write(p)
	c.left -= int64(n)
	if err != nil {
		c.err = err
	}
	return n, err
}

// backupKeyBag is the encrypting device's keybag, or the unencrypted-style bag every backup
// carries otherwise.
func (d *Device) backupKeyBag() []byte {
	if d.bag != nil {
		return d.bag
	}
	return keyBag(d.opts.Seed)
}
