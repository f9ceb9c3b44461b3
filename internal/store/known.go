package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"snapback/internal/atomicfile"
	"snapback/settings"
)

// knownFileName is the host's list of destinations it has backed up to, in the state folder.
// It is what tells "this folder was a backup disk's mount point" from "a new empty folder"
// after the disk is gone: volume.json travels with the disk, so it cannot say that itself.
const knownFileName = "destinations.json"

// KnownDestination is what this computer remembers about a location it initialised or used.
type KnownDestination struct {
	Dir    string    `json:"dir"`    // the folder chosen in settings (absolute)
	Root   string    `json:"root"`   // where the store lives (Dir or Dir/Snapback.Backups)
	Volume Volume    `json:"volume"` // the identity recorded at first use
	Seen   time.Time `json:"seen"`   // last time a run began here
	// Forgotten marks a location the user released with ForgetLocation: the next backup
	// initialises it on whatever disk is there, even in a process that saw the old disk.
	Forgotten bool `json:"forgotten,omitempty"`
}

type knownFile struct {
	Version      int                         `json:"version"`
	Destinations map[string]KnownDestination `json:"destinations"`
}

// knownPath is Options.Known resolved: "" is the default in the OS state folder, "-" none.
func (o Options) knownPath() string {
	switch o.Known {
	case "-":
		return ""
	case "":
		dir, err := settings.StateDir()
		if err != nil {
			return ""
		}
		return filepath.Join(dir, knownFileName)
	}
	return o.Known
}

func readKnown(path string) (knownFile, error) {
	k := knownFile{Destinations: map[string]KnownDestination{}}
	if path == "" {
		return k, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return k, nil
	}
	if err != nil {
		return k, fmt.Errorf("read known backup destinations: %w", err)
	}
	if err := json.Unmarshal(b, &k); err != nil {
		// A damaged list must not silently turn every known disk into a "first use".
		return k, fmt.Errorf("known backup destinations %s are unreadable (%v); fix or remove the file", path, err)
	}
	if k.Destinations == nil {
		k.Destinations = map[string]KnownDestination{}
	}
	return k, nil
}

// lookupKnown returns what this host remembers about dir.
func lookupKnown(path, dir string) (KnownDestination, bool, error) {
	k, err := readKnown(path)
	if err != nil {
		return KnownDestination{}, false, err
	}
	d, ok := k.Destinations[dir]
	return d, ok, nil
}

// updateKnown changes the list under an exclusive lock so that two processes (daemon and
// CLI) never lose each other's entries.
func updateKnown(path string, fn func(map[string]KnownDestination)) error {
	if path == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("remember backup destination: %w", err)
	}
	unlock, err := flockFile(path + ".lock")
	if err != nil {
		return fmt.Errorf("remember backup destination: %w", err)
	}
	defer unlock()
	k, err := readKnown(path)
	if err != nil {
		return err
	}
	fn(k.Destinations)
	// Test runs leave temporary locations behind; a backup disk is never below the temp
	// folder, so entries there whose folder is gone are dropped instead of piling up.
	tmp := filepath.Clean(os.TempDir()) + string(os.PathSeparator)
	for dir := range k.Destinations {
		if strings.HasPrefix(dir, tmp) && !exists(dir) {
			delete(k.Destinations, dir)
		}
	}
	k.Version = 1
	b, err := json.MarshalIndent(k, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, append(b, '\n'), 0o600)
}

// ForgetLocation makes this computer forget that dir was a backup destination, so that the
// next backup initialises it afresh: the documented way to move backups to a new disk that is
// mounted where the old one was (snapback location forget). Backups on the old disk are not
// touched. It returns whether dir was known.
func ForgetLocation(opts Options, dir string) (bool, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return false, err
	}
	found := false
	err = updateKnown(opts.knownPath(), func(m map[string]KnownDestination) {
		d, ok := m[abs]
		found = ok && !d.Forgotten
		m[abs] = KnownDestination{Dir: abs, Forgotten: true}
	})
	return found, err
}

// KnownLocations lists the destinations this computer remembers, by chosen folder.
func KnownLocations(opts Options) ([]KnownDestination, error) {
	k, err := readKnown(opts.knownPath())
	if err != nil {
		return nil, err
	}
	var out []KnownDestination
	for _, d := range k.Destinations {
		if !d.Forgotten {
			out = append(out, d)
		}
	}
	return out, nil
}
