package jobs

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"snapback/settings"
)

// fakeClock is a settable clock.
type fakeClock struct {
	ns  atomic.Int64
	loc *time.Location
}

func newFakeClock(t time.Time) *fakeClock {
	c := &fakeClock{loc: t.Location()}
	c.ns.Store(t.UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()).In(c.loc) }
func (c *fakeClock) Set(t time.Time)         { c.ns.Store(t.UnixNano()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// fakeDevices is a DeviceSource fed by the test; sends block until the manager takes them,
// so the test knows the event was handled before it goes on.
type fakeDevices struct{ ch chan DeviceEvent }

func newFakeDevices() *fakeDevices { return &fakeDevices{ch: make(chan DeviceEvent)} }

func (f *fakeDevices) Events(ctx context.Context) <-chan DeviceEvent { return f.ch }

func (f *fakeDevices) attach(t *testing.T, udid string, tr settings.Transport) {
	t.Helper()
	f.send(t, DeviceEvent{UDID: udid, Name: "Phone " + udid, Attached: true, Transport: tr, Battery: 80})
}

func (f *fakeDevices) detach(t *testing.T, udid string) {
	t.Helper()
	f.send(t, DeviceEvent{UDID: udid})
}

func (f *fakeDevices) send(t *testing.T, ev DeviceEvent) {
	t.Helper()
	select {
	case f.ch <- ev:
	case <-time.After(5 * time.Second):
		t.Fatal("manager did not take the device event")
	}
}

// runRecord is one call of the fake runner.
type runRecord struct {
	req     RunRequest
	started time.Time
	err     error
}

// fakeRunner records runs and answers with fn (success when fn is nil).
type fakeRunner struct {
	now       func() time.Time
	fn        func(ctx context.Context, req RunRequest, progress func(Progress)) (RunResult, error)
	mu        sync.Mutex
	runs      []runRecord
	active    map[string]bool
	nActive   int
	maxActive int
	overlap   bool // a device ran twice at once
}

func (f *fakeRunner) Run(ctx context.Context, req RunRequest, progress func(Progress)) (RunResult, error) {
	f.mu.Lock()
	if f.active == nil {
		f.active = map[string]bool{}
	}
	if f.active[req.UDID] {
		f.overlap = true
	}
	f.active[req.UDID] = true
	f.nActive++
	f.maxActive = max(f.maxActive, f.nActive)
	started := f.now()
	f.mu.Unlock()

	progress(Progress{Phase: PhaseTransferring, Percent: 50})
	var res RunResult
	var err error
	if f.fn != nil {
		res, err = f.fn(ctx, req, progress)
	}

	f.mu.Lock()
	f.active[req.UDID] = false
	f.nActive--
	f.runs = append(f.runs, runRecord{req: req, started: started, err: err})
	f.mu.Unlock()
	return res, err
}

func (f *fakeRunner) records() []runRecord {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]runRecord(nil), f.runs...)
}

// harness runs a Manager with fakes until the test ends.
type harness struct {
	t       *testing.T
	m       *Manager
	clock   *fakeClock
	devs    *fakeDevices
	runner  *fakeRunner
	tick    chan time.Time
	state   *StateStore
	setting *settings.Settings
}

func newHarness(t *testing.T, start time.Time, s *settings.Settings, statePath string, max int, opts ...func(*Config)) *harness {
	t.Helper()
	st, err := OpenState(statePath)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, clock: newFakeClock(start), devs: newFakeDevices(), tick: make(chan time.Time), state: st, setting: s}
	h.runner = &fakeRunner{now: h.clock.Now}
	cfg := Config{
		Settings:      func() *settings.Settings { return h.setting },
		State:         st,
		Runner:        h.runner,
		Devices:       h.devs,
		Now:           h.clock.Now,
		Tick:          h.tick,
		MaxConcurrent: max,
	}
	for _, o := range opts {
		o(&cfg)
	}
	h.m, err = NewManager(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not stop")
		}
	})
	return h
}

// step ticks the manager at the current clock and waits until no run is queued or running.
func (h *harness) step() {
	h.t.Helper()
	select {
	case h.tick <- h.clock.Now():
	case <-time.After(5 * time.Second):
		h.t.Fatal("manager did not take the tick")
	}
	h.idle()
}

// sync waits until the manager handled everything sent to it so far.
func (h *harness) sync() {
	h.t.Helper()
	if err := h.m.do(context.Background(), func() {}); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) idle() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.m.WaitIdle(ctx); err != nil {
		h.t.Fatalf("WaitIdle: %v", err)
	}
}

func mustSettings(t *testing.T, yaml string) *settings.Settings {
	t.Helper()
	s, err := settings.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The test devices' UDIDs, in the form devices report (settings reject malformed ones).
const (
	devA = "00008110-00000000000000AA"
	devB = "00008110-00000000000000BB"
	devC = "00008110-00000000000000CC"
	devD = "00008110-00000000000000DD"
)
