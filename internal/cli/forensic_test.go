package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"snapback/internal/backupfmt"
)

// A forensic copy keeps Manifest.db and the blobs but no Manifest.plist or Status.plist
// (mvt's test artifact): files and extract read it, warn once, and change nothing.
func TestFilesReadForensicCopyWithoutManifestPlist(t *testing.T) {
	dir := filesFixture(t, t.TempDir(), "")
	for _, name := range []string{backupfmt.ManifestPlistName, backupfmt.StatusPlistName} {
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	before := filesTreeHash(t, dir)
	out, stderr, err := filesRun(t, "", "files", "--dir", dir)
	if err != nil {
		t.Fatalf("files on a folder without Manifest.plist: %v\n%s", err, stderr)
	}
	if !strings.Contains(out, "Library/SMS/sms.db") {
		t.Errorf("files output lacks sms.db:\n%s", out)
	}
	if !strings.Contains(stderr, "warning:") || !strings.Contains(stderr, "no Manifest.plist") {
		t.Errorf("no warning about the missing Manifest.plist:\n%s", stderr)
	}
	to := filepath.Join(t.TempDir(), "out")
	if _, stderr, err := filesRun(t, "", "extract", "--dir", dir, "sms", "--to", to); err != nil {
		t.Fatalf("extract: %v\n%s", err, stderr)
	}
	filesCheck(t, filepath.Join(to, "HomeDomain/Library/SMS/sms.db"), filesSMS)
	if filesTreeHash(t, dir) != before {
		t.Error("reading the forensic copy changed it")
	}
	// A folder with neither Manifest.plist nor a plain Manifest.db is still refused.
	if _, _, err := filesRun(t, "", "files", "--dir", t.TempDir()); err == nil {
		t.Error("an empty folder was accepted as a backup")
	}
}
