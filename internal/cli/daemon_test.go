package cli

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"snapback/internal/testenv"

	"snapback/internal/app"
	"snapback/internal/failure"
	"snapback/jobs"
	"snapback/settings"
	"snapback/settings/settingstest"
)

// slogTo is the daemon's log format on w.
func slogTo(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// syncBuffer is the shared goroutine-safe log sink.
type syncBuffer = testenv.Buffer

// daemonTestSource attaches one device and then waits.
type daemonTestSource struct{ udid string }

func (d daemonTestSource) Events(ctx context.Context) <-chan jobs.DeviceEvent {
	ch := make(chan jobs.DeviceEvent)
	go func() {
		defer close(ch)
		select {
		case ch <- jobs.DeviceEvent{UDID: d.udid, Name: "Test iPhone", Attached: true, Transport: settings.TransportUSB, Battery: -1}:
		case <-ctx.Done():
			return
		}
		<-ctx.Done()
	}()
	return ch
}

// daemonTestRunner succeeds; it fetches the device's password as a real runner of an
// encrypted device would, so the password is in the process while files and logs are written.
type daemonTestRunner struct {
	secrets settings.Secrets
	gotPW   chan string
}

func (r daemonTestRunner) Run(ctx context.Context, req jobs.RunRequest, progress func(jobs.Progress)) (jobs.RunResult, error) {
	pw, err := r.secrets.Get(ctx, req.UDID)
	if err != nil && !errors.Is(err, settings.ErrSecretNotFound) {
		return jobs.RunResult{}, err
	}
	select {
	case r.gotPW <- pw:
	default:
	}
	progress(jobs.Progress{Phase: jobs.PhaseTransferring, Percent: 50})
	return jobs.RunResult{Snapshot: "20260610-100000", Files: 3, Bytes: 42}, nil
}

// realDeps are the commands' dependencies as snapback's main builds them: the OS keychain.
func realDeps() deps { return deps{secrets: settings.NewKeyring(0)} }

// daemonTestConfig is the app of the daemon tests: a fake device source and runner (the
// runner reads the keychain the app is given, as the real one does for encrypted devices).
func daemonTestConfig(log *syncBuffer, udid string, gotPW chan string, secrets settings.Secrets) app.Config {
	return app.Config{Logger: slogTo(log), Secrets: secrets, Wake: make(chan struct{}),
		Runner: daemonTestRunner{secrets: secrets, gotPW: gotPW}, Devices: daemonTestSource{udid: udid}}
}

// startDaemon runs the app as `snapback daemon` does until stop is called or the test ends;
// it returns once the manager runs.
func startDaemon(t *testing.T, log *syncBuffer, cfg app.Config) (m *jobs.Manager, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *jobs.Manager, 1)
	done := make(chan error, 1)
	cfg.Ready = func(m *jobs.Manager) { ready <- m }
	go func() {
		done <- app.New(cfg).Run(ctx)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("daemon: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	select {
	case m := <-ready:
		return m, stop
	case err := <-done:
		t.Fatalf("daemon stopped: %v\n%s", err, log.String())
	case <-time.After(10 * time.Second):
		t.Fatalf("daemon not ready\n%s", log.String())
	}
	return nil, stop
}

func waitLog(t *testing.T, log *syncBuffer, s string) {
	t.Helper()
	if !testenv.Eventually(10*time.Second, func() bool { return strings.Contains(log.String(), s) }) {
		t.Fatalf("log never showed %q:\n%s", s, log.String())
	}
}

const daemonTestUDID = "00008030-001A2B3C4D5E802E"

func TestDaemonBacksUpReloadsSettingsAndIsSingleInstance(t *testing.T) {
	dir := cfgTestEnv(t)
	cfg := filepath.Join(dir, "config", "snapback", "config.yaml")
	os.MkdirAll(filepath.Dir(cfg), 0o700)
	os.WriteFile(cfg, []byte("schedule: {window: '00:00-24:00'}\nconditions: {min_battery: 0}\n"), 0o600)
	log := &syncBuffer{}
	m, _ := startDaemon(t, log, daemonTestConfig(log, daemonTestUDID, make(chan string, 1), &settingstest.Secrets{}))

	// The device attached at start is backed up and the state file records it.
	waitLog(t, log, "backup finished")
	statePath := filepath.Join(dir, "state", "snapback", "state.json")
	b, err := os.ReadFile(statePath)
	if err != nil || !strings.Contains(string(b), daemonTestUDID) || !strings.Contains(string(b), `"last_result": "success"`) {
		t.Fatalf("state: %v\n%s", err, b)
	}

	// A second daemon of the same user refuses to start.
	var already *app.AlreadyRunningError
	err = app.New(daemonTestConfig(&syncBuffer{}, daemonTestUDID, nil, &settingstest.Secrets{})).Run(context.Background())
	if !errors.As(err, &already) || exitCode(err) != failure.ExitBusy {
		t.Fatalf("second daemon: %v (exit %d)", err, exitCode(err))
	}

	// Live edits: a good one applies, a broken one is rejected and reported with its key.
	os.WriteFile(cfg, []byte("schedule: {window: '00:00-24:00'}\nconditions: {min_battery: 0}\ntransport: wifi\n"), 0o600)
	waitLog(t, log, "settings reloaded")
	os.WriteFile(cfg, []byte("transport: tin-can\n"), 0o600)
	waitLog(t, log, "settings edit rejected")
	if !strings.Contains(log.String(), "transport:") {
		t.Fatalf("rejection does not name the key:\n%s", log.String())
	}
	if !testenv.Eventually(5*time.Second, func() bool { return m.Status().SettingsError != "" }) {
		t.Fatal("status does not show the settings problem")
	}
}
