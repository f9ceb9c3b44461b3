package cli

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"snapback/internal/devicesim"
	"snapback/internal/failure"
	"snapback/internal/testenv"
	"snapback/settings"
)

// TestEncryptionChecksKeychainFirst: `encryption on` and `change-password` store a password
// afterwards, so they check that the real OS keychain works before they touch the device.
// Without a usable keychain the device stays as it was and the error names the keychain and
// its fix; with a real gnome-keyring the password lands there and the check leaves nothing
// behind.
func TestEncryptionChecksKeychainFirst(t *testing.T) {
	switch os.Getenv("SNAPBACK_ENC_CHILD") {
	case "no-service":
		checkEncryptionWithoutKeychain(t)
		return
	case "gnome-keyring":
		checkEncryptionWithKeychain(t)
		return
	}
	t.Run("no-session-bus", func(t *testing.T) {
		t.Setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path="+filepath.Join(t.TempDir(), "nobody-listens"))
		checkEncryptionWithoutKeychain(t)
	})
	// A session bus on which no Secret Service can be activated: a headless Linux box.
	t.Run("no-secret-service", func(t *testing.T) {
		testenv.RequireTool(t, "dbus-run-session", "dbus-daemon")
		conf := filepath.Join(t.TempDir(), "session.conf")
		os.WriteFile(conf, []byte(`<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>session</type><listen>unix:tmpdir=/tmp</listen>
<policy context="default"><allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/><allow own="*"/></policy>
</busconfig>`), 0o600)
		runEncChild(t, "no-service", "", "--config-file="+conf)
	})
	t.Run("gnome-keyring", func(t *testing.T) {
		testenv.RequireTool(t, "dbus-run-session", "gnome-keyring-daemon")
		runEncChild(t, "gnome-keyring", `echo -n keyringpw | gnome-keyring-daemon --unlock --components=secrets >/dev/null || exit 1
gnome-keyring-daemon --start --components=secrets >/dev/null || exit 1`)
	})
}

// runEncChild runs this test again inside a private D-Bus session with its own HOME, so the
// developer's keyring is never touched.
func runEncChild(t *testing.T, mode, script string, dbusArgs ...string) {
	t.Helper()
	home := t.TempDir()
	os.MkdirAll(filepath.Join(home, "run"), 0o700)
	args := append(dbusArgs, "--", "sh", "-c", script+`
exec "$0" -test.run='^TestEncryptionChecksKeychainFirst$' -test.v -test.count=1`, os.Args[0])
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "dbus-run-session", args...)
	cmd.Env = append(os.Environ(), "SNAPBACK_ENC_CHILD="+mode, "HOME="+home,
		"XDG_DATA_HOME="+filepath.Join(home, "data"), "XDG_RUNTIME_DIR="+filepath.Join(home, "run"))
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestEncryptionChecksKeychainFirst") {
		t.Fatalf("child %s: %v\n%s", mode, err, out)
	}
}

func encStatus(t *testing.T, udid string) string {
	t.Helper()
	out, _, err := runEncCLI(t, "", "encryption", "status", "--udid", udid)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	return out
}

func checkEncryptionWithoutKeychain(t *testing.T) {
	withSecrets(t, settings.NewKeyring(5*time.Second))
	startEncSimulate(t, "--kdf-rounds", "1000", "--files", "10", "--passcode-delay", "30ms")
	udid := devicesim.DefaultIdentity(0).UDID
	const pw = "typed-Pw-4e4e"
	for _, sub := range []string{"on", "change-password"} {
		out, errOut, err := runEncCLI(t, pw+"\n"+pw+"\n", "encryption", sub, "--udid", udid)
		if !errors.Is(err, failure.Keychain) || exitCode(err) != failure.ExitPassword {
			t.Fatalf("%s without a keychain: %v (exit %d)", sub, err, exitCode(err))
		}
		text, fix := strings.ToLower(failure.Text(err)), strings.ToLower(failure.Remedy(err))
		if !strings.Contains(text, "nothing was changed on the device") || !strings.Contains(fix, "gnome-keyring") || strings.Count(text, fix) != 1 || strings.Contains(text+out+errOut, pw) {
			t.Errorf("%s: the error must say nothing changed, name the fix once and never the password: %s", sub, text)
		}
		if strings.Contains(errOut, "enter the passcode on the device") {
			t.Errorf("%s asked the device before checking the keychain", sub)
		}
	}
	if !strings.Contains(encStatus(t, udid), "backup encryption is off") {
		t.Fatal("the device's encryption changed although the password could not be kept")
	}
}

func checkEncryptionWithKeychain(t *testing.T) {
	keyring := settings.NewKeyring(10 * time.Second)
	withSecrets(t, keyring)
	startEncSimulate(t, "--kdf-rounds", "1000", "--files", "10", "--passcode-delay", "30ms")
	udid := devicesim.DefaultIdentity(0).UDID
	ctx := context.Background()
	const first, second = "first-Pw-1a1a", "second-Pw-2b2b"
	if _, errOut, err := runEncCLI(t, first+"\n", "encryption", "on", "--udid", udid); err != nil {
		t.Fatalf("on: %v\n%s", err, errOut)
	}
	if got, err := keyring.Get(ctx, udid); err != nil || got != first {
		t.Fatalf("keychain after on: %v", err)
	}
	if !strings.Contains(encStatus(t, udid), "backup encryption is on") {
		t.Fatal("on did not turn encryption on")
	}
	// The old password comes from the keychain; only the new one is typed.
	if _, errOut, err := runEncCLI(t, second+"\n", "encryption", "change-password", "--udid", udid); err != nil {
		t.Fatalf("change-password: %v\n%s", err, errOut)
	}
	if got, err := keyring.Get(ctx, udid); err != nil || got != second {
		t.Fatalf("keychain after change-password: %v", err)
	}
	if _, err := keyring.Get(ctx, keychainProbeAccount); !errors.Is(err, settings.ErrSecretNotFound) {
		t.Fatalf("the keychain check left its probe behind: %v", err)
	}
	if _, errOut, err := runEncCLI(t, "", "encryption", "off", "--udid", udid); err != nil {
		t.Fatalf("off: %v\n%s", err, errOut)
	}
}
