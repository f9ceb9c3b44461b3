package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"snapback/internal/backupfmt"
	"snapback/internal/failure"
	"snapback/settings"
)

// TestRestoreDirDamagedRefusedBeforeDevice: restore --dir of a folder with a truncated
// Manifest.db, or with a blob missing, is refused as damaged naming the problem, before
// anything is asked, archived or sent to the device (instead of device error 205 half-way).
func TestRestoreDirDamagedRefusedBeforeDevice(t *testing.T) {
	r := newRestoreRig(t, "")
	cfgTestEnv(t)
	cfg, err := settings.ConfigPath()
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Dir(cfg), 0o700)
	if err := os.WriteFile(cfg, []byte("location: "+r.st.Location()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	copyOlder := func() string {
		dir := filepath.Join(t.TempDir(), r.udid)
		if err := os.CopyFS(dir, os.DirFS(r.older.Path)); err != nil {
			t.Fatal(err)
		}
		return dir
	}

	truncated := copyOlder()
	db := filepath.Join(truncated, "Manifest.db")
	fi, _ := os.Stat(db)
	os.Chmod(db, 0o644)
	if err := os.Truncate(db, fi.Size()/3); err != nil {
		t.Fatal(err)
	}
	missing := copyOlder()
	var blob string
	filepath.WalkDir(missing, func(p string, d os.DirEntry, err error) error {
		if err == nil && blob == "" && d.Type().IsRegular() && backupfmt.ValidFileID(d.Name()) {
			blob = p
		}
		return err
	})
	os.Remove(blob)

	for _, c := range []struct{ dir, want string }{{truncated, "Manifest.db"}, {missing, filepath.Base(blob)}} {
		var out, errOut syncBuffer
		err := runRestore(ctx, restoreFlags{udid: r.udid, dir: c.dir, noReboot: true, yes: true}, strings.NewReader(""), &out, &errOut)
		if failure.ClassOf(err) != failure.Damaged || failure.ExitCode(err) != failure.ExitDamaged || !strings.Contains(err.Error(), c.want) {
			t.Errorf("restore --dir %s: %v; want class damaged naming %s", c.dir, err, c.want)
		}
		if errOut.String() != "" {
			t.Errorf("restore --dir %s archived or asked before refusing: %q", c.dir, errOut.String())
		}
	}
	if c := r.agent.Counters(); c.Restores+c.FailedRestores != 0 {
		t.Fatalf("a damaged --dir reached the device: %+v", c)
	}
}
