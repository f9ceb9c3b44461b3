package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"snapback/internal/failure"
	"snapback/internal/store"
)

// --dir means one backup folder in every command: the <UDID> folder that holds Manifest.db,
// or the folder that holds it (what `snapback backup --dir DIR` writes: DIR/<UDID>/). A
// store location is named with --location.

// isBackupFolder reports whether dir looks like one Apple backup: Manifest.db (iOS 10+) or
// the Status.plist every backup tool writes first.
func isBackupFolder(dir string) bool {
	for _, name := range []string{"Manifest.db", "Status.plist"} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err == nil && fi.Mode().IsRegular() {
			return true
		}
	}
	return false
}

// backupFolder resolves --dir to one backup folder: dir itself when it is one; else
// dir/<udid> when udid is given and that is one; else the only backup folder inside dir.
// Anything else is an error that says what dir holds and what to pass instead, before any
// device is contacted.
func backupFolder(dir, udid string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", failure.New(failure.Usage, err)
	}
	fi, err := os.Stat(abs)
	switch {
	case os.IsNotExist(err):
		return "", failure.Newf(failure.NoBackup, "--dir %s does not exist", abs).
			WithFix("pass the folder `snapback backup --dir` wrote into (it holds <UDID>/), or that <UDID> folder")
	case err != nil:
		return "", failure.FromOS(err)
	case !fi.IsDir():
		return "", failure.Newf(failure.NoBackup, "--dir %s is a file, not a folder", abs).
			WithFix("pass the backup folder (the <UDID> folder holding Manifest.db) or the folder that holds it")
	}
	if isBackupFolder(abs) {
		return abs, nil
	}
	if udid != "" {
		for _, name := range []string{udid, strings.ToUpper(udid)} {
			if p := filepath.Join(abs, name); isBackupFolder(p) {
				return p, nil
			}
		}
	}
	entries, err := os.ReadDir(abs)
	if err != nil {
		return "", failure.FromOS(err)
	}
	var found []string
	for _, e := range entries {
		if e.IsDir() && e.Name() != store.VersionsDirName && isBackupFolder(filepath.Join(abs, e.Name())) {
			found = append(found, e.Name())
		}
	}
	slices.Sort(found)
	switch {
	case len(found) == 1:
		// Even when it is another device's: restoring one device from another's backup is
		// allowed (as Finder does).
		return filepath.Join(abs, found[0]), nil
	case len(found) > 1:
		fix := fmt.Sprintf("pass one of them, e.g. --dir %s", filepath.Join(abs, found[0]))
		if udid != "" {
			fix = fmt.Sprintf("none is %s; pass the one to use, e.g. --dir %s", udid, filepath.Join(abs, found[0]))
		}
		return "", failure.Newf(failure.Usage, "--dir %s holds %d backups (%s)", abs, len(found), strings.Join(found, ", ")).WithFix(fix)
	}
	return "", failure.Newf(failure.NoBackup, "--dir %s holds no backup: no Manifest.db or Status.plist in it or in a folder inside it", abs).
		WithFix("pass the folder `snapback backup --dir` wrote into (it holds <UDID>/), or that <UDID> folder; for a snapshot store use --location")
}
