package cli

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"snapback/settings"
)

// cfgTestEnv points every OS folder Snapback uses at a temp dir and returns it.
func cfgTestEnv(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("SNAPBACK_CONFIG", "")
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	t.Setenv("XDG_STATE_HOME", filepath.Join(dir, "state"))
	t.Setenv("XDG_DATA_HOME", filepath.Join(dir, "data"))
	t.Setenv("XDG_RUNTIME_DIR", filepath.Join(dir, "run"))
	// Tests never browse mDNS on the host's network: only tests inside a network namespace
	// of their own (netnstest) turn built-in Wi-Fi discovery on.
	t.Setenv("SNAPBACK_WIFI_DISCOVERY", "mux")
	return dir
}

// cfgTestRun runs one of this file's commands under a bare root, as main would.
func cfgTestRun(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	root := &cobra.Command{Use: "snapback", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(newConfigCmd(), newPasswordCmd(), newDaemonCmd())
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestConfigCommands(t *testing.T) {
	dir := cfgTestEnv(t)
	want := filepath.Join(dir, "config", "snapback", "config.yaml")
	if out, err := cfgTestRun(t, "", "config", "path"); err != nil || strings.TrimSpace(out) != want {
		t.Fatalf("config path = %q, %v; want %s", out, err, want)
	}
	if _, err := cfgTestRun(t, "", "config", "init"); err != nil {
		t.Fatal(err)
	}
	if _, err := cfgTestRun(t, "", "config", "init"); !errors.Is(err, settings.ErrExists) {
		t.Fatalf("init over an existing file: %v", err)
	}
	if out, err := cfgTestRun(t, "", "config", "check"); err != nil || !strings.Contains(out, "OK") {
		t.Fatalf("check of the example: %q %v", out, err)
	}
	// Every key the example documents shows up in `config show`, which itself loads back.
	out, err := cfgTestRun(t, "", "config", "show", "--udid", "00008030-001A2B3C4D5E802E")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range settings.Keys() {
		leaf := k[strings.LastIndex(k, ".")+1:]
		if !strings.Contains(out, leaf+":") {
			t.Errorf("show lacks %s", k)
		}
	}
	if _, err := settings.Parse([]byte(out)); err != nil {
		t.Fatalf("show output does not load: %v\n%s", err, out)
	}

	// A broken file: check exits 2 and names each key.
	os.WriteFile(want, []byte("transport: carrier-pigeon\nschedule: {window: '9 to 5'}\n"), 0o600)
	_, err = cfgTestRun(t, "", "config", "check")
	if exitCode(err) != 2 || !strings.Contains(err.Error(), "transport:") || !strings.Contains(err.Error(), "schedule.window:") {
		t.Fatalf("check of a broken file: exit %d, %v", exitCode(err), err)
	}
	// Types, unknown keys, values and UDIDs in one run, each with its line.
	os.WriteFile(want, []byte("transprot: usb\nschedule: {max_retries: lots}\nencryption: maybe\ndevices: [{udid: 00008110-00005a0000000000}]\n"), 0o600)
	_, err = cfgTestRun(t, "", "config", "check")
	for _, w := range []string{"line 1: transprot: unknown key; fix: did you mean transport?", "line 2: schedule.max_retries:",
		"line 3: encryption:", "line 4: devices[0].udid:", "write it as 00008110-00005A0000000000"} {
		if exitCode(err) != 2 || !strings.Contains(err.Error(), w) {
			t.Errorf("check lacks %q: exit %d, %v", w, exitCode(err), err)
		}
	}
	if _, err := cfgTestRun(t, "", "config", "init", "--force"); err != nil {
		t.Fatal(err)
	}
	if _, err := cfgTestRun(t, "", "config", "check"); err != nil {
		t.Fatal(err)
	}
}
