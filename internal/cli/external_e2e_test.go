package cli

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"snapback/internal/devicesim/backupsim"
	"snapback/internal/failure"
	"snapback/internal/store"
	"snapback/internal/testenv"
)

// TestIdevicebackup2IntoLatestIsRecorded: idevicebackup2 backs up into the store's latest
// folder (the format promises it can); the next snapback backup records that as an
// "external" snapshot and goes on incrementally, every snapshot verifies, and the older
// snapshot that shared files with the latest by hard link is unchanged.
func TestIdevicebackup2IntoLatestIsRecorded(t *testing.T) {
	bin := testenv.RequireTool(t, "idevicebackup2")
	dir := cfgTestEnv(t)
	loc := filepath.Join(t.TempDir(), "Backups")
	writeConfig(t, dir, "location: "+loc+"\n")
	sim := startSim(t)
	id, agent := addDevice(t, sim, 0, "18.1", 80, backupsim.Options{Files: 80, TotalSize: 2 << 20, Seed: 5})
	for i := 0; i < 2; i++ {
		if out, code := runSnapback(t, "backup", "--udid", id.UDID); code != 0 {
			t.Fatalf("backup %d: exit %d\n%s", i+1, code, out)
		}
		agent.Mutate(10)
	}
	ctx := context.Background()
	st, err := store.Open(ctx, loc, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	before, _ := st.List(id.UDID)
	if len(before) != 2 {
		t.Fatalf("%d snapshots, want 2", len(before))
	}
	oldest := hashTree(t, before[0].Path)

	ctx2, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx2, bin, "-u", id.UDID, "backup", loc).CombinedOutput(); err != nil {
		t.Fatalf("idevicebackup2: %v\n%s", err, out)
	}
	agent.Mutate(5)
	if out, code := runSnapback(t, "backup", "--udid", id.UDID); code != 0 {
		t.Fatalf("backup after idevicebackup2: exit %d\n%s", code, out)
	}
	st, err = store.Open(ctx, loc, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	after, err := st.List(id.UDID)
	if err != nil || len(after) != 3 || after[1].Kind != store.KindExternal || after[2].Kind != store.KindIncremental {
		for _, sn := range after {
			t.Logf("%s %s %v", sn.ID, sn.Kind, sn.Notes)
		}
		t.Fatalf("snapshots after idevicebackup2 and snapback: %d, %v; want full, external, incremental", len(after), err)
	}
	for _, sn := range after {
		if err := st.Verify(ctx, id.UDID, sn.ID); err != nil {
			t.Errorf("verify %s (%s): %v", sn.ID, sn.Kind, err)
		}
	}
	if rep, err := st.VerifyData(ctx, id.UDID); err != nil || rep.Unindexed != 0 {
		t.Errorf("verify --data: %v, %d files unindexed", err, rep.Unindexed)
	}
	if got := hashTree(t, after[0].Path); got != oldest {
		t.Error("the oldest snapshot changed when idevicebackup2 wrote into the latest folder")
	}
}

// runSnapback runs the command line in-process as main does and returns what it printed on
// stderr (the failure line included) and its exit status.
func runSnapback(t *testing.T, args ...string) (string, int) {
	t.Helper()
	root := newRootCmd("test")
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := root.ExecuteContext(ctx); err != nil {
		out.WriteString("snapback: " + failure.Text(err) + "\n")
		return out.String(), exitCode(err)
	}
	return out.String(), 0
}
