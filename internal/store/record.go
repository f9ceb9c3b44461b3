package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strings"
	"time"

	"snapback/internal/atomicfile"
)

// Kind says how a backup was made.
type Kind string

const (
	KindFull        Kind = "full"        // the device sent every file
	KindIncremental Kind = "incremental" // the device sent only changes against the previous backup
	KindAdopted     Kind = "adopted"     // a backup folder Snapback found in place and took over
	KindArchive     Kind = "archive"     // a pinned copy beside the latest (<UDID>-YYYYMMDD-HHMMSS)
	KindExternal    Kind = "external"    // another tool (idevicebackup2, Finder) backed up into the latest folder
)

// DeviceInfo is what the record keeps about the device, copied from Info.plist.
type DeviceInfo struct {
	Name           string `json:"name,omitempty"`
	ProductType    string `json:"productType,omitempty"`
	ProductVersion string `json:"productVersion,omitempty"`
	SerialNumber   string `json:"serialNumber,omitempty"`
}

// Snapshot is the record of one committed backup. Records are written atomically; a snapshot
// exists exactly when its record does.
type Snapshot struct {
	// Damaged lists the files (relative to the backup folder) whose content no longer
	// matches the hash recorded when they were written, as found by verify --data or the
	// scrub. A damaged latest backup makes the next backup a full one.
	Damaged []string `json:"damaged,omitempty"`
	// Fingerprint identifies the latest folder's Status.plist and Manifest.db as committed;
	// when it changes, another tool backed up into the folder (see KindExternal).
	Fingerprint string `json:"fingerprint,omitempty"`
	// Notes are what the run found and did on its own, for the user.
	Notes []string `json:"notes,omitempty"`

	Version    int        `json:"version"`
	ID         string     `json:"id"`   // IDLayout of Time, or the archive's folder name
	UDID       string     `json:"udid"` // device the backup belongs to
	Time       time.Time  `json:"time"` // when the backup was committed
	Kind       Kind       `json:"kind"`
	Device     DeviceInfo `json:"device"`
	Encrypted  bool       `json:"encrypted"`
	FileCount  int        `json:"fileCount"`  // regular files in the folder, metadata included
	TotalSize  int64      `json:"totalSize"`  // bytes of the folder, each inode counted once
	UniqueSize int64      `json:"uniqueSize"` // bytes no other folder shares (by hard link)
	Pinned     bool       `json:"pinned"`
	Source     string     `json:"source,omitempty"` // archives: the snapshot ID they copy
	// Exceptions are files the device could not read; they are missing or short here.
	Exceptions []Exception `json:"exceptions,omitempty"`

	// Filled in by List; not stored.
	Latest bool   `json:"-"`
	Path   string `json:"-"`
}

// IsArchive reports whether s is an archived backup folder rather than a snapshot.
func (s Snapshot) IsArchive() bool { return s.Kind == KindArchive }

const recordVersion = 1

func writeRecord(path string, s Snapshot) error {
	s.Version = recordVersion
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode snapshot record: %w", err)
	}
	return atomicfile.WriteFile(path, append(b, '\n'), 0o644)
}

func readRecord(path string) (Snapshot, error) {
	return readJSON[Snapshot](path, "snapshot record")
}

// readJSON decodes the JSON file at path (what names it in a decoding error). A read error
// is returned as it is, so that callers can tell a missing file (fs.ErrNotExist).
func readJSON[T any](path, what string) (T, error) {
	var v T
	b, err := os.ReadFile(path)
	if err != nil {
		return v, err
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return v, fmt.Errorf("%s %s: %w", what, path, err)
	}
	return v, nil
}

// readRecords returns the records in dir, oldest first. Temp files of interrupted atomic
// writes start with a dot and are ignored; unreadable records are reported, not skipped
// silently, because a record is the only proof a snapshot is complete.
func readRecords(dir string) ([]Snapshot, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list snapshot records: %w", err)
	}
	var out []Snapshot
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") || !strings.HasSuffix(name, recordExt) {
			continue
		}
		s, err := readRecord(dir + string(os.PathSeparator) + name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, errors.Join(errs...)
}
