package cli

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"snapback/internal/failure"
)

// `snapback simulate --file-errors 3`: `snapback backup` succeeds, says 3 files could not be
// read, the snapshot lists the 3 files, and `snapshots verify` accepts it.
func TestBackupWithUnreadableFilesCommits(t *testing.T) {
	cfgTestEnv(t)
	startEncSimulate(t, "--files", "60", "--size", "2MB", "--passcode-delay", "50ms", "--file-errors", "3")
	_, stderr, err := runEncCLI(t, "", "backup")
	if err != nil {
		t.Fatalf("backup with 3 unreadable files: %v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "3 files could not be read") {
		t.Errorf("backup output does not say 3 files could not be read:\n%s", stderr)
	}
	out, _, err := runEncCLI(t, "", "snapshots", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var snaps []struct {
		ID         string
		Exceptions []struct{ FileID, Domain, Path, Reason string }
	}
	if err := json.Unmarshal([]byte(out), &snaps); err != nil || len(snaps) != 1 {
		t.Fatalf("snapshots --json = %s (%v)", out, err)
	}
	if ex := snaps[0].Exceptions; len(ex) != 3 || ex[0].Path == "" || ex[0].Reason == "" {
		t.Fatalf("snapshot exceptions = %+v; want the 3 unreadable files", ex)
	}
	if _, stderr, err := runEncCLI(t, "", "snapshots", "verify"); err != nil {
		t.Fatalf("snapshots verify: %v\n%s", err, stderr)
	}
}

// `snapback pair` against `simulate --unpaired`: the trust prompt is shown, pairing succeeds
// and the first backup follows.
func TestPairThenFirstBackup(t *testing.T) {
	cfgTestEnv(t)
	startEncSimulate(t, "--files", "30", "--size", "1MB", "--passcode-delay", "50ms", "--unpaired", "--trust-delay", "300ms")
	if _, _, err := runEncCLI(t, "", "backup"); !errors.Is(err, failure.NotPaired) {
		t.Fatalf("backup before pairing = %v; want NotPaired", err)
	}
	out, stderr, err := runEncCLI(t, "", "pair")
	if err != nil {
		t.Fatalf("pair: %v\n%s", err, stderr)
	}
	if !strings.Contains(out, "Tap Trust on Simulated iPhone 1 and enter its passcode") || !strings.Contains(out, "paired with") {
		t.Errorf("pair output:\n%s", out)
	}
	if _, stderr, err := runEncCLI(t, "", "backup"); err != nil {
		t.Fatalf("first backup after pairing: %v\n%s", err, stderr)
	}
	// Wi-Fi sync switches on and reads back.
	if out, _, err := runEncCLI(t, "", "wifi", "on"); err != nil || !strings.Contains(out, "is on") {
		t.Fatalf("wifi on: %q %v", out, err)
	}
	if out, _, err := runEncCLI(t, "", "wifi", "status"); err != nil || !strings.Contains(out, "is on") {
		t.Fatalf("wifi status: %q %v", out, err)
	}
	if out, _, err := runEncCLI(t, "", "wifi", "off"); err != nil || !strings.Contains(out, "is off") {
		t.Fatalf("wifi off: %q %v", out, err)
	}
}

func TestPairDeniedHasRemedy(t *testing.T) {
	cfgTestEnv(t)
	startEncSimulate(t, "--files", "10", "--unpaired", "--trust-deny")
	_, _, err := runEncCLI(t, "", "pair", "--timeout", "5s")
	fe, ok := failure.As(err)
	if !ok || fe.Class != failure.PairingDenied || !strings.Contains(fe.Remedy(), "tap Trust") {
		t.Fatalf("pair with Don't Trust = %v; want PairingDenied with the tap-Trust remedy", err)
	}
}

// `simulate --realistic` (scan scaled down): the device needs pairing and is locked at
// first, cannot read one file and asks for terabytes; pair and backup still get through.
func TestRealisticSimulatorPairAndBackup(t *testing.T) {
	cfgTestEnv(t)
	startEncSimulate(t, "--files", "40", "--size", "1MB", "--passcode-delay", "50ms", "--realistic",
		"--scan-delay", "200ms", "--trust-delay", "300ms")
	out, stderr, err := runEncCLI(t, "", "pair")
	if err != nil {
		t.Fatalf("pair: %v\n%s", err, stderr)
	}
	if !strings.Contains(out, "Unlock Simulated iPhone 1") || !strings.Contains(out, "Tap Trust on Simulated iPhone 1") {
		t.Errorf("pair output lacks the unlock and trust prompts:\n%s", out)
	}
	_, stderr, err = runEncCLI(t, "", "backup")
	if err != nil {
		t.Fatalf("backup of a realistic device: %v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "1 file could not be read") {
		t.Errorf("backup output does not mention the unreadable file:\n%s", stderr)
	}
}
