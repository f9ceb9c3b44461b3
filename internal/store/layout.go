package store

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Names fixed by the on-disk layout (DESIGN.md §4).
const (
	VersionsDirName = "Snapback.Versions"
	VolumeRootDir   = "Snapback.Backups"
	volumeFile      = "volume.json"
	journalFile     = "journal.json"
	lockFile        = "lock"
	stagingDirName  = "staging"
	snapshotsDir    = "snapshots"
	archivesDir     = "archives"
	recordExt       = ".json"

	// IDLayout formats snapshot IDs: the UTC time the backup was committed.
	IDLayout = "20060102-150405"
)

// Paths below one location. All methods are pure string work.
type layout struct{ root string }

func (l layout) latest(udid string) string    { return filepath.Join(l.root, udid) }
func (l layout) versions() string             { return filepath.Join(l.root, VersionsDirName) }
func (l layout) volume() string               { return filepath.Join(l.versions(), volumeFile) }
func (l layout) device(udid string) string    { return filepath.Join(l.versions(), udid) }
func (l layout) snapshots(udid string) string { return filepath.Join(l.device(udid), snapshotsDir) }
func (l layout) snapshot(udid, id string) string {
	return filepath.Join(l.snapshots(udid), id)
}
func (l layout) record(udid, id string) string {
	return filepath.Join(l.snapshots(udid), id+recordExt)
}
func (l layout) archives(udid string) string { return filepath.Join(l.device(udid), archivesDir) }
func (l layout) archiveRecord(udid, name string) string {
	return filepath.Join(l.archives(udid), name+recordExt)
}
func (l layout) archive(name string) string        { return filepath.Join(l.root, name) }
func (l layout) staging(udid string) string        { return filepath.Join(l.device(udid), stagingDirName) }
func (l layout) stagingBackup(udid string) string  { return filepath.Join(l.staging(udid), udid) }
func (l layout) journal(udid string) string        { return filepath.Join(l.device(udid), journalFile) }
func (l layout) lock(udid string) string           { return filepath.Join(l.device(udid), lockFile) }
func (l layout) partialArchive(name string) string { return filepath.Join(l.root, "."+name+".partial") }

// ArchiveName is Apple's and iMazing's name for an archived backup: <UDID>-YYYYMMDD-HHMMSS.
func ArchiveName(udid string, t time.Time) string {
	return udid + "-" + t.UTC().Format(IDLayout)
}

var (
	idRe      = regexp.MustCompile(`^\d{8}-\d{6}$`)
	archiveRe = regexp.MustCompile(`^(.+)-(\d{8}-\d{6})$`)
	// UDIDs are 40 hex characters (older devices) or 8 hex, dash, 16 hex (A12 and later); the
	// simulator and tests use other names, so accept any safe single path component.
	udidRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
)

// validUDID refuses anything that is not a single safe path component, so a UDID can never
// point outside the location.
func validUDID(udid string) error {
	if !udidRe.MatchString(udid) || strings.Contains(udid, "..") || archiveRe.MatchString(udid) {
		return fmt.Errorf("invalid device identifier %q", udid)
	}
	return nil
}

func validID(id string) bool { return idRe.MatchString(id) }

// newID returns the ID for a backup committed at t, later than every existing ID so that
// IDs sort in commit order even when the clock stepped back or two runs share a second.
func newID(t time.Time, after string) string {
	id := t.UTC().Format(IDLayout)
	if after == "" || id > after {
		return id
	}
	last, err := time.Parse(IDLayout, after)
	if err != nil {
		return id
	}
	return last.Add(time.Second).Format(IDLayout)
}

func parseID(id string) time.Time {
	t, _ := time.Parse(IDLayout, id)
	return t
}
