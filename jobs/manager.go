package jobs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"snapback/internal/failure"
	"snapback/settings"
)

// Phase is the stage of a running backup.
type Phase int

// Phases of a run, in order. PhaseWaitingPasscode may come and go.
const (
	PhasePreparing Phase = iota
	PhaseWaitingPasscode
	PhaseTransferring
	PhaseCommitting
	// PhaseWaitingTrust: the device shows "Trust This Computer?" (pairing); it comes before
	// everything else, but is numbered last so the other phases keep their values.
	PhaseWaitingTrust
)

var phaseNames = [...]string{"Preparing", "WaitingPasscode", "Transferring", "Committing", "WaitingTrust"}

func (p Phase) String() string {
	if int(p) < len(phaseNames) {
		return phaseNames[p]
	}
	return fmt.Sprintf("Phase(%d)", int(p))
}

// Progress is a running backup's progress as the Runner reports it.
type Progress struct {
	Phase   Phase
	Percent float64 // 0..100, or -1 when unknown
	Bytes   int64   // bytes received so far
	Files   int     // files received so far
}

// RunResult is what a successful run reports: everything the views show about it (the
// notification, the tray, the log), so that nobody re-derives it from the store.
type RunResult struct {
	Snapshot  string             // identifier of the committed snapshot
	Dir       string             // the committed latest backup folder (<location>/<UDID>)
	Transport settings.Transport // how the backup travelled
	Bytes     int64              // bytes the device sent in this run
	Files     int                // files the device sent in this run
	Size      int64              // size of the committed backup (each inode once)
	Duration  time.Duration      // how long the run took (the manager fills it in when zero)
	Committed time.Time          // when the snapshot was committed (zero: now)
	Warnings  []string           // what went wrong after the commit (retention, ...)
	// Approval, when set, asks the user's permission for something the run could not do
	// alone, e.g. deleting old snapshots (snapshots.ask_before_delete).
	Approval *Approval
	// Unreadable counts files the device could not read; the snapshot records them and the
	// user is told ("backed up, N files could not be read").
	Unreadable int
	// After, when set, is work for after the result is out: the day's scrub of the stored
	// files, preparing the next backup's starting folder. The manager runs it once it has
	// published RunFinished, with a context that ends at shutdown (which waits for it); until
	// it returns, no new run of the device starts (a Back Up Now is queued). hurry ends with
	// ctx, and earlier when a run of the device is queued meanwhile: work that can wait a day
	// (the scrub) runs under hurry, work the queued run would otherwise do itself (its
	// folder) under ctx. It never changes the run's result; what it found that the user
	// must hear of is published as its own event (DamageFound).
	After func(ctx, hurry context.Context) AfterReport `json:"-"`
}

// AfterReport is what a run's After found.
type AfterReport struct {
	Damaged int // stored files whose content changed on disk since they were written
}

// afterEnd is a run's After having returned.
type afterEnd struct {
	udid, name string
	rep        AfterReport
}

// Runner performs one backup. The composition root implements it on top of the backup
// engine and the snapshot store.
//
// Run blocks until the backup is committed or has failed, and must return promptly once ctx
// is cancelled (cancel or shutdown). It calls progress, from any goroutine but not
// concurrently, whenever the phase or the counters change; progress may block briefly and
// returns at once after ctx is done. Failures are classified once, by the runner, as
// *failure.Error (internal/failure): the schedule and the notifications read the class
// (failure.DeviceLocked, failure.LinkLost, failure.DiskMissing, ...) and never re-word it.
// A nil error means success.
type Runner interface {
	Run(ctx context.Context, req RunRequest, progress func(Progress)) (RunResult, error)
}

// DeviceEvent is a device appearing, changing (battery) or going away.
type DeviceEvent struct {
	UDID     string
	Name     string
	Attached bool // false: detached
	// Transport is settings.TransportUSB or settings.TransportWiFi.
	Transport settings.Transport
	Battery   int // percent, -1 when unknown
	Charging  bool
}

// DeviceSource reports devices. Events returns a channel that delivers an attach event for
// every device already present, then changes; it is closed when ctx ends. Sending the same
// attached device again updates its battery and charging state.
type DeviceSource interface {
	Events(ctx context.Context) <-chan DeviceEvent
}

// Errors of the Manager's commands.
var (
	ErrNotConnected   = errors.New("the device is not connected")
	ErrAlreadyRunning = errors.New("a backup of this device is already running")
	ErrNotRunning     = errors.New("the job manager is not running")
)

// errUserCancelled is the cancel cause of a run the user cancelled (as opposed to shutdown).
var errUserCancelled = errors.New("cancelled by the user")

// Config wires a Manager.
type Config struct {
	// Settings returns the current settings (e.g. (*settings.Store).Current). Required.
	Settings func() *settings.Settings
	// State is the persistent run state. Required.
	State *StateStore
	// Runner performs backups. Required.
	Runner Runner
	// Devices reports devices; nil means none ever appear.
	Devices DeviceSource
	// Bus receives the events; nil creates one (see Manager.Bus).
	Bus *Bus
	// Now is the clock. Its Location is the local time zone of the schedule. Required.
	Now func() time.Time
	// Tick triggers the periodic schedule check; nil ticks every minute on a real timer.
	// The manager reads Now on each tick rather than trusting timers, which stop while a
	// laptop sleeps.
	Tick <-chan time.Time
	// Wake, optional, signals the system woke up: the schedule is checked at once.
	Wake <-chan struct{}
	// LastBackup, optional, returns when the device's latest complete backup was committed
	// according to the backup store (zero: none or unknown). The schedule takes the later of
	// it and the run state's last success, so a backup made outside the manager counts.
	// It is called on the manager's goroutine and must be quick: a cache the store's commits
	// update, never a read of every store's records.
	LastBackup func(udid string) time.Time
	// MaxConcurrent limits runs in progress across devices (default 2).
	MaxConcurrent int
	// Logger, optional, gets one line per run and per notable decision.
	Logger *slog.Logger
}

// Manager runs the schedule: it watches devices and the clock, asks Decide, queues runs
// (one per device, MaxConcurrent in all, manual first) and runs them through the Runner.
// All its state is owned by the goroutine that calls Run; the other methods are safe from
// any goroutine and talk to that loop.
type Manager struct {
	cfg  Config
	bus  *Bus
	log  *slog.Logger
	cmds chan func()
	prog chan progressMsg
	done chan runDone
	// afterDone carries what a run's RunResult.After reported when it returned.
	afterDone chan afterEnd
	stopped   chan struct{}
	started   atomic.Bool

	statusMu sync.Mutex
	status   Status

	// Owned by the Run goroutine.
	ctx         context.Context
	devs        map[string]*devState
	q           queue
	running     map[string]*run
	finishing   map[string]context.CancelFunc // UDIDs whose run's After is still running: ends its hurry
	waiters     []chan struct{}
	settingsErr string
	lastTick    time.Time
}

type devState struct {
	name     string // from the device
	presence Presence
	decision Decision
}

type run struct {
	req      RunRequest
	cancel   context.CancelCauseFunc
	started  time.Time
	progress Progress
	lastPub  time.Time // when the last Progress event went out (throttling)
}

// progressEvery limits Progress events per run: a runner may report thousands of files a
// second, and the tray needs a few updates a second at most. Phase changes always go out.
const progressEvery = 250 * time.Millisecond

type progressMsg struct {
	r *run
	p Progress
}

type runDone struct {
	r     *run
	res   RunResult
	err   error
	cause error
}

// NewManager checks cfg and returns a Manager; call Run to start it.
func NewManager(cfg Config) (*Manager, error) {
	switch {
	case cfg.Settings == nil:
		return nil, errors.New("jobs: Config.Settings is required")
	case cfg.State == nil:
		return nil, errors.New("jobs: Config.State is required")
	case cfg.Runner == nil:
		return nil, errors.New("jobs: Config.Runner is required (no backup engine wired)")
	case cfg.Now == nil:
		return nil, errors.New("jobs: Config.Now is required")
	}
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = 2
	}
	if cfg.Bus == nil {
		cfg.Bus = NewBus(0)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Manager{
		cfg:       cfg,
		bus:       cfg.Bus,
		log:       cfg.Logger,
		cmds:      make(chan func()),
		prog:      make(chan progressMsg),
		done:      make(chan runDone, cfg.MaxConcurrent),
		afterDone: make(chan afterEnd),
		finishing: map[string]context.CancelFunc{},
		stopped:   make(chan struct{}),
		devs:      map[string]*devState{},
		running:   map[string]*run{},
	}
	m.status = Status{Paused: cfg.State.Snapshot().Paused}
	m.bus.setSnapshot(m.Status)
	return m, nil
}

// Bus is the event bus the manager publishes on.
func (m *Manager) Bus() *Bus { return m.bus }

// Status returns a snapshot of the whole app state. The snapshot is a copy; pointers in it
// (PendingApproval) must be treated as read-only.
func (m *Manager) Status() Status {
	m.statusMu.Lock()
	defer m.statusMu.Unlock()
	s := m.status
	s.Devices = slices.Clone(s.Devices)
	return s
}

// Run is the manager loop. It returns when ctx ends, after cancelling the runs in progress
// and waiting for them to return. It can be called once.
func (m *Manager) Run(ctx context.Context) error {
	if !m.started.CompareAndSwap(false, true) {
		return errors.New("jobs: Manager.Run called twice")
	}
	defer close(m.stopped)
	m.ctx = ctx
	var devCh <-chan DeviceEvent
	if m.cfg.Devices != nil {
		devCh = m.cfg.Devices.Events(ctx)
	}
	tick := m.cfg.Tick
	if tick == nil {
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		tick = t.C
	}
	m.evaluateAll()
	for {
		m.publishStatus()
		m.checkIdle()
		select {
		case <-ctx.Done():
			m.shutdown()
			return nil
		case f := <-m.cmds:
			f()
		case ev, ok := <-devCh:
			if !ok {
				devCh = nil
				continue
			}
			m.onDevice(ev)
		case <-tick:
			m.onTick()
		case <-m.cfg.Wake:
			m.log.Info("system woke up; checking the schedule")
			m.onTick()
		case p := <-m.prog:
			m.onProgress(p)
		case d := <-m.done:
			m.onDone(d)
		case e := <-m.afterDone:
			m.onAfterDone(e)
			m.dispatch()
		}
	}
}

// shutdown cancels the runs in progress (their contexts derive from Run's) and waits for
// them; their results are not counted as failed attempts.
func (m *Manager) shutdown() {
	for len(m.running) > 0 || len(m.finishing) > 0 {
		select {
		case d := <-m.done:
			delete(m.running, d.r.req.UDID) // its After is not started: the context has ended
			m.log.Info("backup stopped by shutdown", "udid", d.r.req.UDID)
		case e := <-m.afterDone:
			m.onAfterDone(e)
		}
	}
	m.q = queue{}
	m.publishStatus()
	m.checkIdle()
}

// do runs f on the loop and waits for it. The status is republished before do returns, so a
// caller's next Status call sees the command's effect.
func (m *Manager) do(ctx context.Context, f func()) error {
	finished := make(chan struct{})
	select {
	case m.cmds <- func() { f(); m.publishStatus(); close(finished) }:
	case <-ctx.Done():
		return ctx.Err()
	case <-m.stopped:
		return ErrNotRunning
	}
	select {
	case <-finished:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-m.stopped:
		return ErrNotRunning
	}
}

// BackUpNow queues a manual backup of a connected device ahead of automatic ones. It ignores
// the window, pause and conditions; a success counts as the day's backup.
func (m *Manager) BackUpNow(ctx context.Context, udid string) error {
	var err error
	if e := m.do(ctx, func() {
		d := m.devs[udid]
		switch {
		case d == nil || !d.presence.Connected:
			err = ErrNotConnected
		case m.running[udid] != nil:
			err = ErrAlreadyRunning
		default:
			m.enqueue(udid, true)
		}
	}); e != nil {
		return e
	}
	return err
}

// Cancel cancels the queued or running backup of udid. It reports whether there was one.
// A cancelled automatic run counts as a failed attempt, so it is retried after the retry
// delay rather than restarted at once.
func (m *Manager) Cancel(ctx context.Context, udid string) (bool, error) {
	var found bool
	err := m.do(ctx, func() {
		if m.q.remove(udid) {
			found = true
		}
		if r := m.running[udid]; r != nil {
			r.cancel(errUserCancelled)
			found = true
		}
	})
	return found, err
}

// SetPaused pauses or resumes automatic backups (persisted). Pausing drops queued automatic
// runs; running ones finish.
func (m *Manager) SetPaused(ctx context.Context, paused bool) error {
	var err error
	if e := m.do(ctx, func() {
		err = m.cfg.State.Update(func(s *State) { s.Paused = paused })
		if paused {
			for _, r := range slices.Clone(m.q.items) {
				if !r.Manual {
					m.q.remove(r.UDID)
				}
			}
		} else {
			m.evaluateAll()
		}
	}); e != nil {
		return e
	}
	return err
}

// SettingsChanged tells the manager the settings were reloaded (err == nil: the new ones
// are current) or an edit was rejected (err says why). It publishes SettingsReloaded or
// SettingsInvalid and re-checks the schedule.
func (m *Manager) SettingsChanged(ctx context.Context, err error) error {
	return m.do(ctx, func() {
		if err != nil {
			m.settingsErr = err.Error()
			m.publish(Event{Type: EventSettingsInvalid, Err: err.Error()})
			return
		}
		m.settingsErr = ""
		m.publish(Event{Type: EventSettingsReloaded})
		m.evaluateAll()
	})
}

// ClearApproval removes the pending approval of udid (after the user answered it).
func (m *Manager) ClearApproval(ctx context.Context, udid string) error {
	var err error
	if e := m.do(ctx, func() {
		err = m.cfg.State.UpdateDevice(udid, func(d *DeviceRecord) { d.PendingApproval = nil })
	}); e != nil {
		return e
	}
	return err
}

// WaitIdle blocks until no run is queued or in progress (or ctx ends). Tests use it to step
// the clock; the CLI can use it to wait for a "Back Up Now".
func (m *Manager) WaitIdle(ctx context.Context) error {
	ch := make(chan struct{})
	if err := m.do(ctx, func() { m.waiters = append(m.waiters, ch) }); err != nil {
		return err
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-m.stopped:
		return nil
	}
}

func (m *Manager) checkIdle() {
	if m.q.len() > 0 || len(m.running) > 0 || len(m.finishing) > 0 {
		return
	}
	for _, ch := range m.waiters {
		close(ch)
	}
	m.waiters = nil
}

func (m *Manager) publish(e Event) {
	if e.Time.IsZero() {
		e.Time = m.cfg.Now()
	}
	// Subscribers read Status when an event arrives: it must already show the change.
	m.publishStatus()
	m.bus.Publish(e)
}

func (m *Manager) dev(udid string) *devState {
	d := m.devs[udid]
	if d == nil {
		d = &devState{presence: Presence{Battery: -1}}
		m.devs[udid] = d
	}
	return d
}

// displayName prefers the name in the settings file, then the device's own, then the last
// one remembered.
func (m *Manager) displayName(udid string, rec DeviceRecord) string {
	if o, ok := m.cfg.Settings().Device(udid); ok && o.Name != "" {
		return o.Name
	}
	if d := m.devs[udid]; d != nil && d.name != "" {
		return d.name
	}
	return cmp.Or(rec.Name, udid)
}

func (m *Manager) onDevice(ev DeviceEvent) {
	if ev.UDID == "" {
		return
	}
	now := m.cfg.Now()
	d := m.dev(ev.UDID)
	was := d.presence.Connected
	if ev.Name != "" {
		d.name = ev.Name
	}
	if !ev.Attached {
		d.presence = Presence{Battery: -1}
		if m.q.remove(ev.UDID) {
			m.log.Info("device went away; queued backup dropped", "udid", ev.UDID)
		}
		if was {
			m.publish(Event{Type: EventDeviceDetached, UDID: ev.UDID, Name: m.displayName(ev.UDID, DeviceRecord{})})
		}
		m.evaluate(ev.UDID, now, m.cfg.State.Snapshot()) // the status says "not connected", not a stale reason
		return
	}
	since := d.presence.Since
	if !was {
		since = now // it (re)appeared now; an update of a present device keeps its time
	}
	d.presence = Presence{Connected: true, Transport: ev.Transport, Battery: ev.Battery, Charging: ev.Charging, Since: since}
	if err := m.cfg.State.UpdateDevice(ev.UDID, func(r *DeviceRecord) {
		if r.FirstSeen.IsZero() {
			r.FirstSeen = now
		}
		if ev.Name != "" {
			r.Name = ev.Name
		}
	}); err != nil {
		m.log.Warn("cannot save run state", "err", err)
	}
	if !was {
		m.publish(Event{Type: EventDeviceAttached, UDID: ev.UDID, Name: m.displayName(ev.UDID, DeviceRecord{})})
	}
	m.evaluate(ev.UDID, now, m.cfg.State.Snapshot())
}

func (m *Manager) onTick() {
	now := m.cfg.Now()
	if !m.lastTick.IsZero() && (now.Sub(m.lastTick) > 3*time.Minute || now.Before(m.lastTick)) {
		m.log.Info("wall clock jumped (sleep or clock change); re-checking the schedule",
			"from", m.lastTick, "to", now)
	}
	m.lastTick = now
	m.evaluateAll()
}

// evaluateAll asks Decide about every known device: connected ones may become due, the
// others may become overdue.
func (m *Manager) evaluateAll() {
	now := m.cfg.Now()
	st := m.cfg.State.Snapshot()
	for udid := range st.Devices {
		m.dev(udid)
	}
	for _, o := range m.cfg.Settings().Devices {
		m.dev(o.UDID)
	}
	for _, udid := range slices.Sorted(maps.Keys(m.devs)) {
		m.evaluate(udid, now, st)
	}
}

func (m *Manager) evaluate(udid string, now time.Time, st State) {
	d := m.dev(udid)
	if _, queued := m.q.get(udid); queued || m.running[udid] != nil {
		return
	}
	rec := st.Devices[udid]
	run := rec.RunState
	if m.cfg.LastBackup != nil {
		// A backup committed outside this manager (the CLI, another Snapback, a restored
		// state file) still counts as the day's backup.
		if t := m.cfg.LastBackup(udid); t.After(run.LastSuccess) {
			run.LastSuccess = t
		}
	}
	dec := Decide(Input{
		Now:      now,
		Settings: m.cfg.Settings().Effective(udid),
		Run:      run,
		Device:   d.presence,
		Paused:   st.Paused,
	})
	d.decision = dec
	if dec.Overdue && civilOf(rec.OverdueNotified.In(now.Location())) != civilOf(now) {
		m.publish(Event{Type: EventOverdue, UDID: udid, Name: m.displayName(udid, rec), OverdueDays: dec.OverdueDays})
		if err := m.cfg.State.UpdateDevice(udid, func(r *DeviceRecord) { r.OverdueNotified = now }); err != nil {
			m.log.Warn("cannot save run state", "err", err)
		}
	}
	if dec.Due {
		m.enqueue(udid, false)
	}
}

func (m *Manager) enqueue(udid string, manual bool) {
	d := m.dev(udid)
	rec := m.cfg.State.Device(udid)
	req := RunRequest{
		UDID:      udid,
		Name:      m.displayName(udid, rec),
		Manual:    manual,
		Transport: d.presence.Transport,
		Settings:  m.cfg.Settings().Effective(udid),
		QueuedAt:  m.cfg.Now(),
	}
	if m.q.push(req) {
		m.publish(Event{Type: EventRunQueued, UDID: udid, Name: req.Name, Manual: manual})
		if hurry := m.finishing[udid]; hurry != nil {
			// A Back Up Now right after a backup should not wait for the day's scrub.
			m.log.Info("a backup waits: cutting the work after the last one short", "udid", udid)
			hurry()
		}
	}
	m.dispatch()
}

func (m *Manager) dispatch() {
	for len(m.running) < m.cfg.MaxConcurrent {
		req, ok := m.q.pop(func(u string) bool { return m.running[u] != nil || m.finishing[u] != nil })
		if !ok {
			return
		}
		m.start(req)
	}
}

func (m *Manager) start(req RunRequest) {
	ctx, cancel := context.WithCancelCause(m.ctx)
	r := &run{req: req, cancel: cancel, started: m.cfg.Now(), progress: Progress{Phase: PhasePreparing, Percent: -1}}
	m.running[req.UDID] = r
	m.log.Info("backup started", "udid", req.UDID, "name", req.Name, "manual", req.Manual)
	m.publish(Event{Type: EventRunStarted, UDID: req.UDID, Name: req.Name, Manual: req.Manual})
	go func() {
		d := runDone{r: r}
		defer func() {
			// A panicking runner must not take the daemon down or leave the device "running".
			if p := recover(); p != nil {
				d.err = fmt.Errorf("backup engine panicked: %v", p)
			}
			d.cause = context.Cause(ctx)
			m.done <- d
			cancel(nil)
		}()
		d.res, d.err = m.cfg.Runner.Run(ctx, req, func(p Progress) {
			select {
			case m.prog <- progressMsg{r: r, p: p}:
			case <-ctx.Done():
			}
		})
	}()
}

// takeAfter removes a successful run's After from d and marks the device finishing: it
// starts no run until runAfter reports the end on afterDone.
func (m *Manager) takeAfter(d *runDone) (func(ctx, hurry context.Context) AfterReport, context.Context) {
	after := d.res.After
	d.res.After = nil
	if after == nil || d.err != nil {
		return nil, nil
	}
	hurry, cancel := context.WithCancel(m.ctx)
	m.finishing[d.r.req.UDID] = cancel
	return after, hurry
}

// runAfter runs a finished run's After on a goroutine of its own, started by the loop (which
// shutdown makes wait for it), and reports its end to the loop.
func (m *Manager) runAfter(udid, name string, after func(ctx, hurry context.Context) AfterReport, hurry context.Context) {
	e := afterEnd{udid: udid, name: name}
	defer func() { m.afterDone <- e }()
	defer func() {
		if p := recover(); p != nil {
			m.log.Error("work after a backup panicked", "udid", udid, "panic", p)
		}
	}()
	e.rep = after(m.ctx, hurry)
}

// onAfterDone lets the device run again and tells of damage the After found, also during
// shutdown: the scrub that found it has marked the snapshots, and the user should hear it.
func (m *Manager) onAfterDone(e afterEnd) {
	if hurry := m.finishing[e.udid]; hurry != nil {
		hurry() // releases the context
	}
	delete(m.finishing, e.udid)
	if e.rep.Damaged > 0 {
		m.publish(Event{Type: EventDamageFound, UDID: e.udid, Name: e.name, Damaged: e.rep.Damaged})
	}
}

func (m *Manager) onProgress(msg progressMsg) {
	r := msg.r
	if m.running[r.req.UDID] != r {
		return // late report of a finished run
	}
	prev := r.progress
	r.progress = msg.p
	base := Event{UDID: r.req.UDID, Name: r.req.Name, Manual: r.req.Manual, Progress: msg.p}
	if msg.p.Phase == PhaseWaitingTrust && prev.Phase != PhaseWaitingTrust {
		e := base
		e.Type = EventTrustRequested
		m.publish(e)
	}
	if msg.p.Phase == PhaseWaitingPasscode && prev.Phase != PhaseWaitingPasscode {
		e := base
		e.Type = EventPasscodeRequested
		m.publish(e)
	}
	if prev.Phase == PhaseWaitingPasscode && msg.p.Phase != PhaseWaitingPasscode {
		e := base
		e.Type = EventPasscodeDismissed
		m.publish(e)
	}
	now := m.cfg.Now()
	if msg.p.Phase == prev.Phase && now.Sub(r.lastPub) < progressEvery && now.Sub(r.lastPub) >= 0 {
		return // the status still shows the latest figures
	}
	r.lastPub = now
	base.Type = EventProgress
	base.Time = now
	m.publish(base)
}

// resultOf says how a run ended, from the failure class the runner gave its error.
func resultOf(err, cause error) Result {
	switch {
	case err == nil:
		return ResultSuccess
	case errors.Is(cause, errUserCancelled):
		return ResultCancelled
	}
	switch failure.ClassOf(err) {
	case failure.DeviceLocked:
		return ResultPasscodeTimeout
	case failure.LinkLost, failure.NotConnected:
		return ResultDeviceGone
	case failure.DiskMissing:
		return ResultDiskMissing
	case failure.CancelledOnDevice:
		return ResultDeclined
	}
	return ResultFailed
}

func (m *Manager) onDone(d runDone) {
	r := d.r
	udid := r.req.UDID
	delete(m.running, udid)
	after, hurry := m.takeAfter(&d)
	if m.ctx.Err() != nil && !errors.Is(d.cause, errUserCancelled) && d.err != nil {
		// Stopped by shutdown (the loop may see the result before it sees ctx end): not an
		// attempt, so it does not eat a retry.
		m.log.Info("backup stopped by shutdown", "udid", udid)
		return
	}
	now := m.cfg.Now()
	if r.progress.Phase == PhaseWaitingPasscode {
		m.publish(Event{Type: EventPasscodeDismissed, UDID: udid, Name: r.req.Name, Manual: r.req.Manual})
	}
	res := resultOf(d.err, d.cause)
	// The error is shown as classified: its message (with its cause) once, and its remedy
	// once, separately, so that no view adds either a second time.
	var errText, remedy string
	if d.err != nil {
		errText, remedy = d.err.Error(), failure.Remedy(d.err)
		if res == ResultCancelled {
			errText, remedy = errUserCancelled.Error(), ""
		}
	}
	if res == ResultSuccess {
		if d.res.Duration == 0 {
			d.res.Duration = now.Sub(r.started)
		}
		if d.res.Transport == "" {
			d.res.Transport = r.req.Transport
		}
		if d.res.Committed.IsZero() {
			d.res.Committed = now
		}
	}
	if err := m.cfg.State.UpdateDevice(udid, func(rec *DeviceRecord) {
		rec.recordResult(res, r.req.Manual, r.started, now, failure.Text(d.err))
		if res == ResultCancelled {
			rec.LastError = errText
		}
		if res == ResultSuccess && d.res.Approval != nil {
			rec.PendingApproval = d.res.Approval
		}
	}); err != nil {
		m.log.Warn("cannot save run state", "err", err)
	}
	ev := Event{UDID: udid, Name: r.req.Name, Manual: r.req.Manual, Result: res, Err: errText, Remedy: remedy}
	if f, ok := failure.As(d.err); ok && res != ResultCancelled {
		ev.Class = string(f.Class)
	}
	if res == ResultSuccess {
		m.log.Info("backup finished", "udid", udid, "snapshot", d.res.Snapshot, "transport", d.res.Transport,
			"bytes", d.res.Bytes, "files", d.res.Files, "size", d.res.Size, "took", d.res.Duration.Round(time.Millisecond))
		ev.Type = EventRunFinished
		run := d.res
		ev.Run = &run
		ev.Unreadable = d.res.Unreadable
		m.publish(ev)
		if d.res.Approval != nil {
			m.publish(Event{Type: EventApprovalNeeded, UDID: udid, Name: r.req.Name, Approval: d.res.Approval})
		}
	} else {
		m.log.Warn("backup failed", "udid", udid, "result", res, "class", failure.ClassOf(d.err), "err", errText)
		ev.Type = EventRunFailed
		m.publish(ev)
	}
	if after != nil {
		go m.runAfter(udid, r.req.Name, after, hurry) // once the result is out
	}
	// Re-decide now, so the status says "already backed up today" or "retrying at 14:05"
	// at once rather than after the next minute tick. Not after a device-gone run of a
	// device still listed: its detach is on the way, and since going away is no failed
	// attempt, re-deciding at once would spin runs on a flapping link (the tick decides).
	if res != ResultDeviceGone || !m.dev(udid).presence.Connected {
		m.evaluate(udid, now, m.cfg.State.Snapshot())
	}
	m.dispatch()
}

// publishStatus rebuilds the Status snapshot from the loop's state.
func (m *Manager) publishStatus() {
	st := m.cfg.State.Snapshot()
	s := Status{Paused: st.Paused, Running: len(m.running), Queued: m.q.len(), SettingsError: m.settingsErr}
	for udid, d := range m.devs {
		rec := st.Devices[udid]
		ds := DeviceStatus{
			UDID: udid, Name: m.displayName(udid, rec),
			Connected: d.presence.Connected, Transport: d.presence.Transport,
			Battery: d.presence.Battery, Charging: d.presence.Charging,
			LastSuccess: rec.LastSuccess, LastResult: rec.LastResult, LastError: rec.LastError,
			Overdue: d.decision.Overdue, OverdueDays: d.decision.OverdueDays,
			PendingApproval: rec.PendingApproval,
			Reason:          d.decision.Reason, ReasonText: d.decision.Text, NextCheck: d.decision.NextCheck,
		}
		if r := m.running[udid]; r != nil {
			ds.Manual, ds.Progress = r.req.Manual, r.progress
			switch r.progress.Phase {
			case PhaseWaitingPasscode:
				ds.State = StateWaitingPasscode
			case PhaseCommitting:
				ds.State = StateCommitting
			default:
				ds.State = StateBackingUp
			}
		} else if req, ok := m.q.get(udid); ok {
			ds.State, ds.Manual = StateQueued, req.Manual
		} else if rec.LastResult.Failed() {
			ds.State = StateFailed
		} else if st.Paused {
			ds.State = StatePaused
		}
		s.Devices = append(s.Devices, ds)
	}
	slices.SortFunc(s.Devices, func(a, b DeviceStatus) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.UDID, b.UDID))
	})
	m.statusMu.Lock()
	m.status = s
	m.statusMu.Unlock()
}
