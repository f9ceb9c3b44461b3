package cli

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"snapback/settings/settingstest"
	"strings"
	"testing"
	"time"

	"snapback/internal/testenv"
	"snapback/settings"
)

const leakTestPW = "Pw-must-not-leak-7f3a9"

// TestPasswordNeverInFilesOrLogs stores a backup password through `snapback password set`,
// runs the daemon whose runner reads it back (as the engine does for encrypted devices),
// writes the settings file, and then searches every file Snapback wrote (config, state,
// data, runtime folders), its log and its command output for the password. It runs with an
// in-memory keychain everywhere and, when dbus-run-session and gnome-keyring-daemon exist,
// once more inside a private D-Bus session against a real, unlocked gnome-keyring.
func TestPasswordNeverInFilesOrLogs(t *testing.T) {
	if os.Getenv("SNAPBACK_PW_CHILD") == "1" {
		checkPasswordNeverLeaks(t) // newSecrets is the real keyring here
		return
	}
	t.Run("memory-keychain", func(t *testing.T) {
		withSecrets(t, &settingstest.Secrets{})
		checkPasswordNeverLeaks(t)
	})
	t.Run("gnome-keyring", func(t *testing.T) {
		testenv.RequireTool(t, "dbus-run-session", "gnome-keyring-daemon")
		home := t.TempDir()
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "dbus-run-session", "--", "sh", "-c",
			`echo -n keyringpw | gnome-keyring-daemon --unlock --components=secrets >/dev/null || exit 1
gnome-keyring-daemon --start --components=secrets >/dev/null || exit 1
exec "$0" -test.run='^TestPasswordNeverInFilesOrLogs$' -test.v -test.count=1`, os.Args[0])
		// A private HOME and runtime dir, so this gnome-keyring never meets another one.
		os.MkdirAll(filepath.Join(home, "run"), 0o700)
		cmd.Env = append(os.Environ(), "SNAPBACK_PW_CHILD=1", "HOME="+home,
			"XDG_DATA_HOME="+filepath.Join(home, "keyring-data"), "XDG_RUNTIME_DIR="+filepath.Join(home, "run"))
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestPasswordNeverInFilesOrLogs") {
			t.Fatalf("child under gnome-keyring: %v\n%s", err, out)
		}
	})
}

func checkPasswordNeverLeaks(t *testing.T) {
	dir := cfgTestEnv(t)
	var outputs []string
	run := func(stdin string, args ...string) {
		t.Helper()
		out, err := cfgTestRun(t, stdin, args...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		outputs = append(outputs, out)
	}
	run(leakTestPW+"\n", "password", "set", "--udid", daemonTestUDID)
	run("", "config", "init")
	cfg, _ := settings.ConfigPath()
	os.WriteFile(cfg, []byte("schedule: {window: '00:00-24:00'}\nconditions: {min_battery: 0}\nencryption: \"on\"\n"), 0o600)

	gotPW := make(chan string, 1)
	log := &syncBuffer{}
	_, stop := startDaemon(t, log, daemonTestConfig(log, daemonTestUDID, gotPW))
	waitLog(t, log, "backup finished")
	select {
	case pw := <-gotPW:
		if pw != leakTestPW {
			t.Fatalf("runner read %q from the keychain", pw)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("runner never ran")
	}
	stop()
	run("", "config", "show")
	run("", "config", "check")

	// Search everything Snapback wrote.
	var files int
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil // sockets, locks held by nobody now
		}
		files++
		if strings.Contains(string(b), leakTestPW) {
			t.Errorf("password found in %s", p)
		}
		return nil
	})
	if files < 3 { // config.yaml, state.json, daemon.lock at least
		t.Fatalf("only %d files written; the search proves nothing", files)
	}
	if strings.Contains(log.String(), leakTestPW) {
		t.Errorf("password in the log:\n%s", log.String())
	}
	for _, o := range outputs {
		if strings.Contains(o, leakTestPW) {
			t.Errorf("password in command output: %q", o)
		}
	}

	run("", "password", "forget", "--udid", daemonTestUDID)
	if _, err := newSecrets().Get(context.Background(), daemonTestUDID); !errors.Is(err, settings.ErrSecretNotFound) {
		t.Fatalf("after forget: %v", err)
	}
	run("", "password", "forget", "--udid", daemonTestUDID) // nothing stored: still fine
}

func TestPasswordSetRejectsEmptyInputAndNeedsUDID(t *testing.T) {
	cfgTestEnv(t)
	withSecrets(t, &settingstest.Secrets{})
	if _, err := cfgTestRun(t, "\n", "password", "set", "--udid", "U"); err == nil {
		t.Fatal("empty password accepted")
	}
	if _, err := cfgTestRun(t, "pw\n", "password", "set"); err == nil || !strings.Contains(err.Error(), "udid") {
		t.Fatalf("missing --udid: %v", err)
	}
	if _, err := cfgTestRun(t, "pw\r\n", "password", "set", "--udid", "U"); err != nil {
		t.Fatal(err)
	}
	if pw, _ := newSecrets().Get(context.Background(), "U"); pw != "pw" {
		t.Fatalf("stored %q, want line ending stripped", pw)
	}
}
