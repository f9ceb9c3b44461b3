//go:build linux || freebsd || openbsd || netbsd

package cli

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"snapback/internal/testenv"
)

func runAutostart(t *testing.T, arg string) string {
	t.Helper()
	cmd := newAutostartCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs([]string{arg})
	if err := cmd.Execute(); err != nil {
		t.Fatalf("autostart %s: %v\n%s", arg, err, out.String())
	}
	return out.String()
}

// validateDesktopFile runs desktop-file-validate when it is installed (required under CI).
func validateDesktopFile(t *testing.T, path string) {
	t.Helper()
	tool := testenv.RequireTool(t, "desktop-file-validate")
	if out, err := exec.Command(tool, path).CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("desktop-file-validate %s: %v\n%s", path, err, out)
	}
}

func TestAutostartXDG(t *testing.T) {
	home, system := t.TempDir(), t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", home)
	t.Setenv("XDG_CONFIG_DIRS", system)
	entry := filepath.Join(home, "autostart", "snapback.desktop")

	if got := runAutostart(t, "status"); !strings.HasPrefix(got, "off ") {
		t.Errorf("status before on = %q, want off", got)
	}
	if got := runAutostart(t, "on"); !strings.Contains(got, entry) {
		t.Errorf("on printed %q, want the entry path %s", got, entry)
	}
	data, err := os.ReadFile(entry)
	if err != nil {
		t.Fatalf("on did not write %s: %v", entry, err)
	}
	exe, err := executable()
	if err != nil {
		t.Fatal(err)
	}
	if want := "Exec=" + desktopExec(exe, "tray") + "\n"; !strings.Contains(string(data), want) {
		t.Errorf("entry lacks %q:\n%s", want, data)
	}
	validateDesktopFile(t, entry)
	if got := runAutostart(t, "status"); got != "on ("+entry+")\n" {
		t.Errorf("status after on = %q", got)
	}
	runAutostart(t, "off")
	if _, err := os.Stat(entry); !os.IsNotExist(err) {
		t.Errorf("off left %s behind (%v)", entry, err)
	}
	if got := runAutostart(t, "status"); !strings.HasPrefix(got, "off ") {
		t.Errorf("status after off = %q, want off", got)
	}
	runAutostart(t, "off") // idempotent
}

// With the .deb's system-wide entry in /etc/xdg/autostart, "off" must shadow it per user.
func TestAutostartXDGSystemEntry(t *testing.T) {
	home, system := t.TempDir(), t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", home)
	t.Setenv("XDG_CONFIG_DIRS", "relative/ignored:"+system)
	sys := filepath.Join(system, "autostart", "snapback.desktop")
	pkg, err := os.ReadFile(filepath.Join("..", "..", "packaging", "linux", "snapback-autostart.desktop"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(sys), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sys, pkg, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := runAutostart(t, "status"); got != "on (system-wide "+sys+")\n" {
		t.Errorf("status with the system entry = %q", got)
	}
	runAutostart(t, "off")
	user := filepath.Join(home, "autostart", "snapback.desktop")
	data, err := os.ReadFile(user)
	if err != nil || !strings.Contains(string(data), "Hidden=true") {
		t.Fatalf("off wrote %q (%v), want a Hidden=true override", data, err)
	}
	validateDesktopFile(t, user)
	if got := runAutostart(t, "status"); got != "off ("+user+")\n" {
		t.Errorf("status after off = %q", got)
	}
	runAutostart(t, "on")
	if got := runAutostart(t, "status"); got != "on ("+user+")\n" {
		t.Errorf("status after on = %q", got)
	}
}

func TestDesktopExecQuoting(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"/usr/bin/snapback", "/usr/bin/snapback"},
		{"/home/anna/My Apps/snapback", `"/home/anna/My Apps/snapback"`},
		{`/opt/a"b$c`, `"/opt/a\\"b\\$c"`},
		{"/opt/100%/snapback", "/opt/100%%/snapback"},
	} {
		if got := desktopExec(tt.in); got != tt.want {
			t.Errorf("desktopExec(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestPackagedDesktopFilesValidate(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("..", "..", "packaging", "linux", "*.desktop"))
	if len(files) < 2 {
		t.Fatalf("packaging/linux has %d desktop files, want the app entry and the autostart entry", len(files))
	}
	for _, f := range files {
		validateDesktopFile(t, f)
	}
}
