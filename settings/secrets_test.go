package settings

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"snapback/internal/testenv"
)

// Secret Service tests run the test binary again inside a private D-Bus session
// (dbus-run-session) so they never touch the developer's own keyring. The child mode is
// chosen by SNAPBACK_KEYRING_CHILD.

const testUDID = "00008030-001A2B3C4D5E802E"

// needTools skips (or under CI=true fails) when a tool the test needs is missing.
func needTools(t *testing.T, tools ...string) {
	t.Helper()
	testenv.RequireTool(t, tools...)
}

// runChild runs this test binary's test named test inside dbus-run-session, with its own
// HOME so keyring files go to a temp dir. script runs first inside the session.
func runChild(t *testing.T, test, mode, script string, dbusArgs ...string) string {
	t.Helper()
	home := t.TempDir()
	args := append(dbusArgs, "--", "sh", "-c", script+`
exec "$0" -test.run="^`+test+`$" -test.v -test.count=1`, os.Args[0])
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "dbus-run-session", args...)
	cmd.Env = append(os.Environ(),
		"SNAPBACK_KEYRING_CHILD="+mode,
		"HOME="+home,
		"XDG_DATA_HOME="+filepath.Join(home, "data"),
		"XDG_RUNTIME_DIR="+filepath.Join(home, "run"),
	)
	os.MkdirAll(filepath.Join(home, "run"), 0o700)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: "+test) {
		t.Fatalf("child %s failed: %v\n%s", mode, err, out)
	}
	return string(out)
}

func TestSecretServiceRoundTrip(t *testing.T) {
	if os.Getenv("SNAPBACK_KEYRING_CHILD") == "roundtrip" {
		ctx := context.Background()
		k := NewKeyring(10 * time.Second)
		const pw = "correct horse battery staple"
		if _, err := k.Get(ctx, testUDID); !errors.Is(err, ErrSecretNotFound) {
			t.Fatalf("Get before Set: err = %v, want ErrSecretNotFound", err)
		}
		if err := k.Set(ctx, testUDID, pw); err != nil {
			t.Fatal(err)
		}
		if got, err := k.Get(ctx, testUDID); err != nil || got != pw {
			t.Fatalf("Get = %q, %v", got, err)
		}
		if err := k.Set(ctx, testUDID, pw+"2"); err != nil {
			t.Fatal(err)
		}
		if got, _ := k.Get(ctx, testUDID); got != pw+"2" {
			t.Fatalf("Set does not replace: %q", got)
		}
		if err := k.Delete(ctx, testUDID); err != nil {
			t.Fatal(err)
		}
		if _, err := k.Get(ctx, testUDID); !errors.Is(err, ErrSecretNotFound) {
			t.Fatalf("Get after Delete: err = %v", err)
		}
		if err := k.Delete(ctx, testUDID); !errors.Is(err, ErrSecretNotFound) {
			t.Fatalf("Delete twice: err = %v", err)
		}
		return
	}
	needTools(t, "dbus-run-session", "gnome-keyring-daemon")
	runChild(t, "TestSecretServiceRoundTrip", "roundtrip",
		`echo -n testpw | gnome-keyring-daemon --unlock --components=secrets >/dev/null || exit 1
gnome-keyring-daemon --start --components=secrets >/dev/null || exit 1`)
}

func TestNoSessionBusGivesTypedErrorWithRemedy(t *testing.T) {
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path="+filepath.Join(t.TempDir(), "nobody-listens"))
	err := NewKeyring(5*time.Second).Set(context.Background(), testUDID, "pw-not-to-leak")
	var ke *KeyringError
	if !errors.As(err, &ke) || ke.Kind != KeyringNoSessionBus {
		t.Fatalf("err = %#v, want *KeyringError{Kind: KeyringNoSessionBus}", err)
	}
	if !strings.Contains(err.Error(), "gnome-keyring") || strings.Contains(err.Error(), "pw-not-to-leak") {
		t.Fatalf("message lacks remedy or leaks the password: %v", err)
	}
}

// A session bus without any Secret Service provider: the usual headless Linux box.
func TestNoSecretServiceGivesTypedErrorWithRemedy(t *testing.T) {
	if os.Getenv("SNAPBACK_KEYRING_CHILD") == "noservice" {
		_, err := NewKeyring(5*time.Second).Get(context.Background(), testUDID)
		var ke *KeyringError
		if !errors.As(err, &ke) || ke.Kind != KeyringNoService {
			t.Fatalf("err = %#v, want *KeyringError{Kind: KeyringNoService}", err)
		}
		if !strings.Contains(err.Error(), "install and start a Secret Service provider") {
			t.Fatalf("no remedy in %q", err)
		}
		t.Log(err)
		return
	}
	needTools(t, "dbus-run-session", "dbus-daemon")
	// A bus configuration without service directories, so nothing can be activated.
	conf := filepath.Join(t.TempDir(), "session.conf")
	os.WriteFile(conf, []byte(`<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>session</type><listen>unix:tmpdir=/tmp</listen>
<policy context="default"><allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/><allow own="*"/></policy>
</busconfig>`), 0o600)
	runChild(t, "TestNoSecretServiceGivesTypedErrorWithRemedy", "noservice", "", "--config-file="+conf)
}

func TestKeyringCallIsBounded(t *testing.T) {
	k := NewKeyring(50 * time.Millisecond)
	k.haveBus = nil // test the bound itself, not the bus check
	block := make(chan struct{})
	defer close(block)
	start := time.Now()
	err := k.call(context.Background(), "get", func() error { <-block; return nil })
	var ke *KeyringError
	if !errors.As(err, &ke) || ke.Kind != KeyringTimeout || time.Since(start) > 2*time.Second {
		t.Fatalf("err = %v after %v", err, time.Since(start))
	}
	// The hung call still holds the slot: the next call times out instead of piling up.
	if err := k.call(context.Background(), "get", func() error { return nil }); !errors.As(err, &ke) || ke.Kind != KeyringTimeout {
		t.Fatalf("second call: %v", err)
	}
}

// With no bus address at all, the keyring must not autolaunch one (dbus-launch would leave a
// daemon behind); it reports the missing session bus instead.
func TestNoBusAddressDoesNotAutolaunch(t *testing.T) {
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", "")
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	_, err := NewKeyring(5*time.Second).Get(context.Background(), testUDID)
	var ke *KeyringError
	if !errors.As(err, &ke) || ke.Kind != KeyringNoSessionBus {
		t.Fatalf("err = %v, want KeyringNoSessionBus", err)
	}
}
