package offsite

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"snapback/internal/store"
)

// BackupRequest names a backup folder to copy into the repository as one restic snapshot.
type BackupRequest struct {
	// Dir is the backup folder; its base name must be the UDID, so that the restic snapshot
	// holds the tree /<UDID>/... whatever the folder's location: restore then gives a
	// standard Apple backup folder, and the paths inside stay the same between runs.
	Dir        string
	UDID       string
	DeviceName string
	SnapshotID string    // the Snapback snapshot it copies
	Time       time.Time // recorded as the restic snapshot's time (retention rules use it)
	// Parent is the restic snapshot to compare with (its unchanged files are not read
	// again); "" lets restic choose.
	Parent string
}

// Tags returns the restic tags of a request. restic splits --tag values on commas, so a
// comma in the device name becomes a space.
func (q BackupRequest) Tags() []string {
	name := strings.ReplaceAll(q.DeviceName, ",", " ")
	tags := []string{TagUDID + q.UDID}
	if name != "" {
		tags = append(tags, TagDevice+name)
	}
	if q.SnapshotID != "" {
		tags = append(tags, TagSnapshot+q.SnapshotID)
	}
	return tags
}

// Backup copies q.Dir into the repository as one snapshot, reporting restic's progress to
// emit. It returns restic's summary, whose SnapshotID names the new snapshot.
//
// Files are compared with the parent by path, size, modification time and inode but not
// ctime (--ignore-ctime): Snapback hands restic hard-linked views of committed snapshots,
// and making a hard link changes a file's ctime, not its content.
//
// An upload interrupted by a crash or kill leaves no snapshot; the next Backup uploads
// again, and restic does not upload again what the repository's index already lists.
func (r *Restic) Backup(ctx context.Context, q BackupRequest, emit func(Event)) (Summary, error) {
	if filepath.Base(q.Dir) != q.UDID || q.UDID == "" {
		return Summary{}, fmt.Errorf("off-site backup: folder %s is not named after device %q", q.Dir, q.UDID)
	}
	args := []string{"backup", "--json", "--ignore-ctime"}
	for _, t := range q.Tags() {
		args = append(args, "--tag", t)
	}
	if !q.Time.IsZero() {
		// restic reads --time in local time.
		args = append(args, "--time", q.Time.Local().Format("2006-01-02 15:04:05"))
	}
	if q.Parent != "" {
		args = append(args, "--parent", q.Parent)
	}
	args = append(args, q.UDID)
	var sum *Summary
	var errs []string
	c := &call{op: "backup", args: args, dir: filepath.Dir(q.Dir), stdout: func(rd io.Reader) error {
		var err error
		sum, err = parseEvents(rd, func(ev Event) {
			if ev.Kind == EventError && len(errs) < 5 {
				errs = append(errs, ev.Error)
			}
			if emit != nil {
				emit(ev)
			}
		})
		return err
	}}
	if err := r.run(ctx, c); err != nil {
		return Summary{}, err
	}
	if sum == nil {
		return Summary{}, newError("backup", KindFailed, r.Repository, "restic finished without a summary", nil)
	}
	if len(errs) > 0 {
		// restic made a snapshot, but without some files: not a copy to rely on.
		return *sum, newError("backup", KindFailed, r.Repository,
			"restic could not read every file: "+strings.Join(errs, "; "), nil)
	}
	return *sum, nil
}

// PushResult says what a push did.
type PushResult struct {
	Snapshot Snapshot // the restic snapshot holding the Snapback snapshot
	Summary  Summary  // restic's summary; zero when AlreadyThere
	// AlreadyThere: the repository held this Snapback snapshot already; nothing was uploaded.
	AlreadyThere bool
	Forgotten    []string // restic snapshots removed by the keep rules
}

// PushOptions control Push.
type PushOptions struct {
	// SnapshotID is the Snapback snapshot to copy; "" or "latest" is the latest backup.
	SnapshotID string
	// Keep, when set, is applied after the upload (forget + prune of this device's snapshots).
	Keep Keep
	// Events receives restic's progress.
	Events func(Event)
}

// ViewName is the purpose of the store views (store.OpenView) a push uploads from.
const ViewName = "offsite"

// Push copies one committed snapshot of udid from st into the repository as one restic
// snapshot tagged with the UDID, the device name and the Snapback snapshot ID. It uploads
// from a hard-linked view of the snapshot (store.OpenView), so a commit or retention run
// meanwhile changes nothing the upload reads; inside the restic snapshot the tree is always
// /<UDID>/..., and the device's previous restic snapshot is the parent. A snapshot the repository already holds is not uploaded again,
// so Push is safe to repeat after any interruption.
func Push(ctx context.Context, r *Restic, st *store.Store, udid string, o PushOptions) (PushResult, error) {
	var res PushResult
	if _, err := r.CheckVersion(ctx); err != nil {
		return res, err
	}
	id := o.SnapshotID
	if id == "" {
		id = "latest"
	}
	sn, err := st.Get(udid, id)
	if err != nil {
		return res, err
	}
	have, err := r.Snapshots(ctx, udid)
	if err != nil {
		return res, err
	}
	for _, h := range have {
		if h.SnapbackID == sn.ID {
			res.Snapshot, res.AlreadyThere = h, true
			return res, nil
		}
	}
	view, err := st.OpenView(ctx, udid, sn.ID, ViewName)
	if err != nil {
		return res, err
	}
	defer view.Close()
	sn = view.Snapshot
	q := BackupRequest{Dir: view.Dir, UDID: udid, DeviceName: sn.Device.Name, SnapshotID: sn.ID, Time: sn.Time}
	if n := len(have); n > 0 {
		q.Parent = have[n-1].ID
	}
	sum, err := r.Backup(ctx, q, o.Events)
	res.Summary = sum
	if err != nil {
		return res, err
	}
	// Described from what Snapback asked for, not listed again: every listing costs restic a
	// key derivation. restic 0.14 names the new snapshot by its short ID, later ones in full.
	res.Snapshot = Snapshot{ID: sum.SnapshotID, ShortID: sum.SnapshotID, Time: q.Time, Tags: q.Tags(),
		UDID: udid, DeviceName: strings.ReplaceAll(q.DeviceName, ",", " "), SnapbackID: sn.ID}
	if len(res.Snapshot.ShortID) > 8 {
		res.Snapshot.ShortID = res.Snapshot.ShortID[:8]
	}
	if !o.Keep.IsZero() {
		res.Forgotten, err = r.Forget(ctx, udid, o.Keep)
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

// Find returns udid's restic snapshot named by which: "" or "latest" for the newest, a restic
// snapshot ID (or its prefix, 4+ characters), or a Snapback snapshot ID.
func Find(snaps []Snapshot, udid, which string) (Snapshot, error) {
	var mine []Snapshot
	for _, s := range snaps {
		if s.UDID == udid {
			mine = append(mine, s)
		}
	}
	if len(mine) == 0 {
		return Snapshot{}, newError("restore", KindNotFound, "", fmt.Sprintf("the repository holds no snapshot of %s", udid), nil)
	}
	if which == "" || which == "latest" {
		return mine[len(mine)-1], nil
	}
	var hits, copies []Snapshot
	for _, s := range mine {
		switch {
		case s.SnapbackID == which:
			// Two pushes that raced (the daemon's and a manual one) can both have copied the
			// same backup: any copy will do, take the newest.
			copies = append(copies, s)
		case s.ID == which || (len(which) >= 4 && strings.HasPrefix(s.ID, which)):
			hits = append(hits, s)
		}
	}
	if n := len(copies); n > 0 {
		return copies[n-1], nil
	}
	switch len(hits) {
	case 1:
		return hits[0], nil
	case 0:
		return Snapshot{}, newError("restore", KindNotFound, "", fmt.Sprintf("no snapshot of %s is called %q", udid, which), nil)
	}
	return Snapshot{}, newError("restore", KindNotFound, "", fmt.Sprintf("%q names %d snapshots of %s; give more of the ID", which, len(hits), udid), errors.New("ambiguous"))
}

func sortSnapshots(s []Snapshot) {
	sort.SliceStable(s, func(i, j int) bool {
		if !s[i].Time.Equal(s[j].Time) {
			return s[i].Time.Before(s[j].Time)
		}
		return s[i].ID < s[j].ID
	})
}
