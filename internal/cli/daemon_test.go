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

	"snapback/jobs"
	"snapback/settings"
)

// syncBuffer is a log sink safe for the daemon's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

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

func withSecrets(t *testing.T, s settings.Secrets) {
	t.Helper()
	old := newSecrets
	newSecrets = func() settings.Secrets { return s }
	t.Cleanup(func() { newSecrets = old })
}

// withDaemonBackend wires a fake backend for the test.
func withDaemonBackend(t *testing.T, udid string, gotPW chan string) {
	t.Helper()
	old := daemonBackend
	daemonBackend = func(ctx context.Context, env daemonEnv) (jobs.Runner, jobs.DeviceSource, error) {
		return daemonTestRunner{secrets: env.Secrets, gotPW: gotPW}, daemonTestSource{udid: udid}, nil
	}
	t.Cleanup(func() { daemonBackend = old })
}

// startDaemon runs runDaemon until stop is called or the test ends; it returns once the
// manager runs.
func startDaemon(t *testing.T, log *syncBuffer) (m *jobs.Manager, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *jobs.Manager, 1)
	done := make(chan error, 1)
	go func() {
		done <- runDaemon(ctx, slogTo(log), func(m *jobs.Manager) { ready <- m })
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
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(log.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("log never showed %q:\n%s", s, log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

const daemonTestUDID = "00008030-001A2B3C4D5E802E"

func TestDaemonBacksUpReloadsSettingsAndIsSingleInstance(t *testing.T) {
	dir := cfgTestEnv(t)
	cfg := filepath.Join(dir, "config", "snapback", "config.yaml")
	os.MkdirAll(filepath.Dir(cfg), 0o700)
	os.WriteFile(cfg, []byte("schedule: {window: '00:00-24:00'}\nconditions: {min_battery: 0}\n"), 0o600)
	withDaemonBackend(t, daemonTestUDID, make(chan string, 1))
	withSecrets(t, &settingstest.Secrets{})
	log := &syncBuffer{}
	m, _ := startDaemon(t, log)

	// The device attached at start is backed up and the state file records it.
	waitLog(t, log, "backup finished")
	statePath := filepath.Join(dir, "state", "snapback", "state.json")
	b, err := os.ReadFile(statePath)
	if err != nil || !strings.Contains(string(b), daemonTestUDID) || !strings.Contains(string(b), `"last_result": "success"`) {
		t.Fatalf("state: %v\n%s", err, b)
	}

	// A second daemon of the same user refuses to start.
	var already alreadyRunningError
	if err := runDaemon(context.Background(), slogTo(&syncBuffer{}), nil); !errors.As(err, &already) {
		t.Fatalf("second daemon: %v", err)
	}

	// Live edits: a good one applies, a broken one is rejected and reported with its key.
	os.WriteFile(cfg, []byte("schedule: {window: '00:00-24:00'}\nconditions: {min_battery: 0}\ntransport: wifi\n"), 0o600)
	waitLog(t, log, "settings reloaded")
	os.WriteFile(cfg, []byte("transport: tin-can\n"), 0o600)
	waitLog(t, log, "settings edit rejected")
	if !strings.Contains(log.String(), "transport:") {
		t.Fatalf("rejection does not name the key:\n%s", log.String())
	}
	deadline := time.Now().Add(5 * time.Second)
	for m.Status().SettingsError == "" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if m.Status().SettingsError == "" {
		t.Fatal("status does not show the settings problem")
	}
}
