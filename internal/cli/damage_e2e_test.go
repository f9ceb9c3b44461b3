package cli

import (
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"snapback/internal/app"
	"snapback/internal/devicesim/backupsim"
	"snapback/internal/testenv"
	"snapback/notify"
)

// Damage the scrub finds is told after the result, not instead of it: `snapback backup`
// prints its summary (the committed snapshot) first, then a warning naming how many stored
// files are damaged and the command that lists them; --json adds an object of kind
// "damage" after the result. The exit status stays 0: the backup itself succeeded.
func TestBackupTellsDamageAfterTheResult(t *testing.T) {
	dir := cfgTestEnv(t)
	loc := filepath.Join(dir, "backups")
	if err := os.Mkdir(loc, 0o755); err != nil {
		t.Fatal(err)
	}
	// The whole store a day, so the scrub surely reads the damaged file.
	writeConfig(t, dir, "location: "+loc+"\nscrub: {max_bytes_per_day: 1TB, max_percent_per_day: 100}\n")
	sim := startSim(t)
	for i, asJSON := range []bool{false, true} {
		id, _ := addDevice(t, sim, 20+i, "17.5.1", 90, backupsim.Options{Files: 30, TotalSize: 1 << 19, Seed: int64(30 + i)})
		if stdout, stderr, code := cliRun(t, "backup", "--udid", id.UDID); code != 0 {
			t.Fatalf("first backup: exit %d\n%s%s", code, stdout, stderr)
		}
		rot(t, filepath.Join(loc, id.UDID))
		args := []string{"backup", "--udid", id.UDID}
		if asJSON {
			args = append(args, "--json")
		}
		stdout, stderr, code := cliRun(t, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d\n%s%s", args, code, stdout, stderr)
		}
		lines := strings.Split(strings.TrimRight(stdout, "\n"), "\n")
		last, result := lines[len(lines)-1], lines[len(lines)-2]
		if !asJSON {
			if !strings.Contains(result, "committed: ") || !strings.HasPrefix(last, "warning: 1 stored file is damaged") ||
				!strings.Contains(last, "snapback snapshots verify --data") {
				t.Fatalf("%v printed:\n%s\nwant the summary, then the damage warning", args, stdout)
			}
			continue
		}
		var res jsonResult
		var dmg struct {
			Kind    string
			Damaged int
			Message string
		}
		if json.Unmarshal([]byte(result), &res) != nil || res.Kind != "result" || !res.OK ||
			json.Unmarshal([]byte(last), &dmg) != nil || dmg.Kind != "damage" || dmg.Damaged != 1 || !strings.Contains(dmg.Message, "verify --data") {
			t.Fatalf("%v printed:\n%s\nwant the result, then a damage object", args, stdout)
		}
	}
}

// rot flips one byte in the middle of one stored file of the backup folder dir, in place,
// and puts its mode and times back, as a failing disk would.
func rot(t *testing.T, dir string) {
	t.Helper()
	var blob string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && blob == "" && d.Type().IsRegular() && len(filepath.Base(filepath.Dir(p))) == 2 {
			if fi, _ := d.Info(); fi != nil && fi.Size() > 0 {
				blob = p
			}
		}
		return nil
	})
	if blob == "" {
		t.Fatalf("no stored file in %s", dir)
	}
	fi, err := os.Stat(blob)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x40
	if err := os.Chmod(blob, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(blob, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(blob, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(blob, fi.Mode()); err != nil {
		t.Fatal(err)
	}
}

// In the daemon, the scrub after a scheduled or manual backup runs once the run's result is
// out, and damage it finds reaches the user as its own notification, naming the device,
// after the completion's.
func TestDaemonNotifiesDamageAfterCompletion(t *testing.T) {
	dir := cfgTestEnv(t)
	loc := filepath.Join(dir, "backups")
	if err := os.Mkdir(loc, 0o755); err != nil {
		t.Fatal(err)
	}
	writeConfig(t, dir, "location: "+loc+"\nschedule: {window: '00:00-24:00'}\nconditions: {min_battery: 0}\n"+
		"scrub: {max_bytes_per_day: 1TB, max_percent_per_day: 100}\n")
	sim := startSim(t)
	id, _ := addDevice(t, sim, 22, "17.5.1", 90, backupsim.Options{Files: 30, TotalSize: 1 << 19, Seed: 40})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	msgs := make(chan notify.Message, 16)
	rec := notifierFunc(func(m notify.Message) error {
		msgs <- m
		return nil
	})
	log := &syncBuffer{}
	m, _ := startDaemon(t, log, app.Config{Logger: slogTo(log), Notifier: rec, Runner: &app.Runner{Backups: &app.Backups{Stores: &app.Stores{}}}})
	// next is the next notification other than the passcode prompt (iOS 17 asks each run).
	next := func(what string) notify.Message {
		t.Helper()
		for {
			select {
			case msg := <-msgs:
				if msg.Kind != notify.PasscodeRequested {
					return msg
				}
			case <-ctx.Done():
				t.Fatalf("no %s notification\n%s", what, log.String())
				return notify.Message{}
			}
		}
	}
	if msg := next("completion"); msg.Kind != notify.Completed {
		t.Fatalf("first notification %+v, want the completion", msg)
	}
	if err := m.WaitIdle(ctx); err != nil { // the upkeep included
		t.Fatal(err)
	}
	rot(t, filepath.Join(loc, id.UDID))
	if err := m.BackUpNow(ctx, id.UDID); err != nil {
		t.Fatal(err)
	}
	if msg := next("completion"); msg.Kind != notify.Completed {
		t.Fatalf("notification %+v, want the completion of the Back Up Now", msg)
	}
	if msg := next("damage"); msg.Kind != notify.DamageFound || msg.UDID != id.UDID || !strings.Contains(msg.Body, "1 file") {
		t.Fatalf("notification %+v, want the damage of 1 file of %s", msg, id.UDID)
	}
	// The log feed follows the bus on its own goroutine: its line may come after the message.
	if !testenv.Eventually(10*time.Second, func() bool { return strings.Contains(log.String(), "1 stored file is damaged") }) {
		t.Fatalf("the log does not tell of the damage:\n%s", log.String())
	}
}
