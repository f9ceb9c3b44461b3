package cli

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"snapback/settings/settingstest"
	"strings"
	"sync"
	"testing"
	"time"

	"snapback/internal/devicesim"
	"snapback/internal/failure"
)

// simOutput collects the output of a command running on another goroutine.
type simOutput struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *simOutput) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *simOutput) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startSimulateCmd runs `snapback simulate args…` until the test ends and points
// USBMUXD_SOCKET_ADDRESS at it. It returns the simulator's combined output.
func startEncSimulate(t *testing.T, args ...string) *simOutput {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &simOutput{}
	root := newRootCmd("test")
	root.SetOut(out)
	root.SetErr(out)
	root.SetArgs(append([]string{"simulate", "--listen", "127.0.0.1:0"}, args...))
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("simulate: %v", err)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		// The address comes first; the devices are attached once "simulator running" is logged.
		if first, _, ok := strings.Cut(out.String(), "\n"); ok && strings.Contains(out.String(), "simulator running") {
			addr, found := strings.CutPrefix(first, "USBMUXD_SOCKET_ADDRESS=")
			if !found {
				t.Fatalf("simulate printed %q first", first)
			}
			t.Setenv("USBMUXD_SOCKET_ADDRESS", addr)
			t.Setenv("SNAPBACK_WIFI_DISCOVERY", "mux") // never browse the host's network
			return out
		}
		select {
		case err := <-done:
			t.Fatalf("simulate ended: %v\n%s", err, out)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("simulate printed no address:\n%s", out)
	return nil
}

// runCLI runs one snapback command with stdin and returns stdout, stderr and the error.
func runEncCLI(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	root := newRootCmd("test")
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

// `snapback simulate --backup-password-file` starts a device whose encryption is already
// on with the file's password; `snapback encryption` then reads the status, refuses to turn
// it on twice, changes the password (old from the terminal, new stored in the keychain),
// reports an outdated keychain password as the device's 207, and turns encryption off and
// on again. No password reaches an argument, the output or the simulator's log.
func TestEncryptionCommandsAgainstSimulate(t *testing.T) {
	secrets := &settingstest.Secrets{}
	withSecrets(t, secrets)
	const simPW, newPW, thirdPW, bogus = "sim-Pw-from-file-93c1", "new-Pw-typed-5d2e", "third-Pw-7a7a", "outdated-Pw-0b0b"
	pwFile := filepath.Join(t.TempDir(), "backup-password")
	if err := os.WriteFile(pwFile, []byte(simPW+"\nignored second line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	simOut := startEncSimulate(t, "--backup-password-file", pwFile, "--kdf-rounds", "1000", "--files", "30", "--passcode-delay", "30ms", "--verbose")
	if !strings.Contains(simOut.String(), "encrypted=true") {
		t.Errorf("simulate did not report an encrypting device:\n%s", simOut)
	}
	udid := devicesim.DefaultIdentity(0).UDID
	var all strings.Builder
	run := func(stdin string, args ...string) (string, error) {
		t.Helper()
		out, errOut, err := runEncCLI(t, stdin, append(args, "--udid", udid)...)
		all.WriteString(out + errOut)
		if err != nil {
			all.WriteString(err.Error())
		}
		return out + errOut, err
	}

	if out, err := run("", "encryption", "status"); err != nil || !strings.Contains(out, "backup encryption is on") {
		t.Fatalf("status: %q, %v", out, err)
	}
	if _, err := run("x\n", "encryption", "on"); err == nil || !strings.Contains(err.Error(), "encryption is already on") {
		t.Errorf("on while on: %v", err)
	}
	out, err := run(simPW+"\n"+newPW+"\n", "encryption", "change-password")
	if err != nil || !strings.Contains(out, "enter the passcode on the device") {
		t.Fatalf("change-password: %v\n%s", err, out)
	}
	if got, _ := secrets.Get(context.Background(), udid); got != newPW {
		t.Errorf("keychain holds %q after change-password; want the new password", got)
	}

	secrets.Set(context.Background(), udid, bogus)
	_, err = run("", "encryption", "off")
	if text := failure.Text(err); !errors.Is(err, failure.WrongPassword) || strings.Count(text, "207") != 1 || strings.Count(text, "password set --udid") != 1 || exitCode(err) != failure.ExitPassword {
		t.Errorf("off with an outdated keychain password: %v (exit %d)", err, exitCode(err))
	}
	secrets.Set(context.Background(), udid, newPW)
	if out, err := run("", "encryption", "off"); err != nil || !strings.Contains(out, "backup encryption is off") {
		t.Fatalf("off: %v\n%s", err, out)
	}
	if out, err := run("", "encryption", "status"); err != nil || !strings.Contains(out, "backup encryption is off") {
		t.Errorf("status after off: %q, %v", out, err)
	}
	if _, err := run("", "encryption", "off"); err == nil || !strings.Contains(err.Error(), "encryption is off") {
		t.Errorf("off while off: %v", err)
	}

	secrets.Delete(context.Background(), udid)
	if out, err := run(thirdPW+"\n", "encryption", "on"); err != nil || !strings.Contains(out, "stored the backup password") {
		t.Fatalf("on: %v\n%s", err, out)
	}
	if got, _ := secrets.Get(context.Background(), udid); got != thirdPW {
		t.Errorf("keychain holds %q after on; want the typed password", got)
	}
	if out, err := run("", "encryption", "status"); err != nil || !strings.Contains(out, "backup encryption is on") {
		t.Errorf("status after on: %q, %v", out, err)
	}

	for _, pw := range []string{simPW, newPW, thirdPW, bogus} {
		if strings.Contains(all.String(), pw) {
			t.Errorf("command output contains a password:\n%s", all.String())
		}
		if strings.Contains(simOut.String(), pw) {
			t.Error("the simulator's log contains a password")
		}
	}
}

func TestReadPasswordFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(s), 0o600)
		return p
	}
	if pw, err := readPasswordFile(write("crlf", "pw one\r\nsecond\n")); err != nil || pw != "pw one" {
		t.Errorf("crlf file: %q, %v", pw, err)
	}
	if pw, err := readPasswordFile(write("nonl", "last")); err != nil || pw != "last" {
		t.Errorf("no newline: %q, %v", pw, err)
	}
	if _, err := readPasswordFile(write("empty", "\nx\n")); err == nil {
		t.Error("an empty first line was accepted")
	}
	if _, err := readPasswordFile(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing file was accepted")
	}
	if pw, err := readPasswordFile(""); err != nil || pw != "" {
		t.Errorf("no file: %q, %v", pw, err)
	}
}
