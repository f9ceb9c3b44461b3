package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"snapback/internal/statuspage"
	"snapback/jobs"
	"snapback/notify"
	"snapback/notify/push"
	"snapback/settings"
)

// Headless tells users what is happening where no desktop shows it: push alerts to the
// channels in `alerts:`, dead-man pings from `pings:`, and the status page with its JSON API
// and metrics on `http.listen`. The daemon and the tray both run it.
type Headless struct {
	Manager      *jobs.Manager
	Settings     func() *settings.Settings
	SettingsPath string
	Secrets      settings.Secrets
	Stores       *Stores
	Logger       *slog.Logger
	Now          func() time.Time
	// TokenPath is the status page's token file (statuspage.TokenFile in the state folder).
	TokenPath string
	// Backoff overrides push.DefaultBackoff (tests).
	Backoff []time.Duration
	// Listening, when set, is told the status page's address once it serves, and given a
	// function that makes one-time login links to it (the tray's "Open Status Page").
	Listening func(addr string, loginURL func() string)
}

// HTTPTokenPath is the status page's token file: in the state folder, readable by the user only.
func HTTPTokenPath() (string, error) {
	dir, err := settings.StateDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, statuspage.TokenFile), nil
}

// Run starts everything and returns when ctx ends and all of it has stopped.
func (h *Headless) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	bus := h.Manager.Bus()

	dispatcher := push.New(push.Options{Resolve: h.channels, Logger: h.Logger, Backoff: h.Backoff})
	gate := notify.NewGate(dispatcher, h.Now)
	fwd := &Notifications{Bus: bus, Notifier: gate, Settings: h.Settings,
		SettingsPath: h.SettingsPath, Logger: h.Logger, AllKinds: true,
		Location: func(udid string) string { loc, _ := Location(h.Settings(), udid, ""); return loc }}
	pinger := push.NewPinger(push.PingOptions{Resolve: h.ping, Logger: h.Logger, Backoff: h.Backoff})
	feed := NewStatusFeed(h.Manager, h.Settings, h.Stores, h.Now)

	wg.Go(func() { dispatcher.Run(ctx) })
	wg.Go(func() { fwd.Run(ctx) })
	wg.Go(func() { pinger.Run(ctx) })
	wg.Go(func() { feed.Run(ctx, pinger) })
	wg.Go(func() { h.followListen(ctx, feed) })
}

// followListen runs the status page on http.listen and moves it when an edit of the settings
// file changes the address (or turns the page on or off).
func (h *Headless) followListen(ctx context.Context, feed *StatusFeed) {
	sub := h.Manager.Bus().Subscribe(jobs.EventSettingsReloaded)
	defer sub.Close()
	h.checkAlerts(ctx)
	for {
		listen := h.Settings().HTTP.Listen
		sctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			if listen != "" {
				h.serve(sctx, listen, feed)
			}
		}()
		changed := false
		for !changed {
			select {
			case <-ctx.Done():
				stop()
				<-done
				return
			case _, ok := <-sub.C:
				if !ok {
					stop()
					<-done
					return
				}
				h.checkAlerts(ctx)
				changed = h.Settings().HTTP.Listen != listen
			}
		}
		h.Logger.Info("http.listen changed; moving the status page", "from", listen, "to", h.Settings().HTTP.Listen)
		stop()
		<-done
	}
}

// serve runs the status page on listen until ctx ends.
func (h *Headless) serve(ctx context.Context, listen string, feed *StatusFeed) {
	token, err := statuspage.LoadOrCreateToken(h.TokenPath)
	if err != nil {
		h.Logger.Error("status page not started", "err", err)
		return
	}
	handler, err := statuspage.Handler(statuspage.Options{
		Source: feed, Actions: pageActions{h}, Token: token,
		Private: !settings.IsLoopback(listen), Logger: h.Logger,
	})
	if err != nil {
		h.Logger.Error("status page not started", "err", err)
		return
	}
	err = statuspage.Serve(ctx, listen, handler, h.Logger, func(addr string) {
		h.Logger.Info("status page serving", "url", "http://"+addr+"/", "token_required_for_reads", !settings.IsLoopback(listen))
		if h.Listening != nil {
			h.Listening(addr, func() string { return handler.LoginURL("http://" + addr) })
		}
	})
	if err != nil {
		h.Logger.Error("status page stopped", "err", err)
	}
}

// checkAlerts tells the user at start and after each edit about alert URLs that cannot work
// (a service the library does not know, a keychain entry or file that is missing), so a typo
// is found before the first failed backup needs to be announced.
func (h *Headless) checkAlerts(ctx context.Context) {
	s := h.Settings()
	type list struct {
		prefix string
		alerts []settings.Alert
	}
	lists := []list{{"", s.Global.Alerts}}
	for i, d := range s.Devices {
		lists = append(lists, list{fmt.Sprintf("devices[%d].", i), d.Effective.Alerts})
	}
	checked := map[string]bool{} // devices inherit the global list: report each URL once
	for _, l := range lists {
		for i, a := range l.alerts {
			if checked[a.URL] {
				continue
			}
			checked[a.URL] = true
			key := fmt.Sprintf("%salerts[%d].url", l.prefix, i)
			u, err := settings.ResolveURL(ctx, a.URL, h.Secrets)
			if err == nil {
				err = push.Check(u)
			}
			if err != nil {
				h.Logger.Error("alert channel cannot work", "key", key, "url", settings.Redact(a.URL), "err", err,
					"fix", "correct the URL (each service's format: github.com/nicholas-fedor/shoutrrr docs); `snapback alerts test` tries every channel")
			}
		}
	}
}

// channels resolves the alert channels of a device (udid "" for app-wide messages).
func (h *Headless) channels(ctx context.Context, udid string) ([]push.Channel, []error) {
	s := h.Settings()
	alerts := s.Global.Alerts
	if udid != "" {
		alerts = s.Effective(udid).Alerts
	}
	var out []push.Channel
	var errs []error
	for _, a := range alerts {
		u, err := settings.ResolveURL(ctx, a.URL, h.Secrets)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, push.Channel{Label: settings.Redact(a.URL), URL: u, Wants: a.Wants})
	}
	return out, errs
}

func (h *Headless) ping(ctx context.Context, udid string, s push.Stage) (string, string, error) {
	p := h.Settings().Effective(udid).Pings
	v := map[push.Stage]string{push.Start: p.Start, push.Success: p.Success, push.Failure: p.Failure}[s]
	if v == "" {
		return "", "", nil
	}
	u, err := settings.ResolveURL(ctx, v, h.Secrets)
	return u, settings.Redact(v), err
}

// pageActions carries out the status page's buttons on the job manager.
type pageActions struct{ h *Headless }

func (a pageActions) BackUpNow(ctx context.Context, udid string) error {
	return a.h.Manager.BackUpNow(ctx, udid)
}

func (a pageActions) Cancel(ctx context.Context, udid string) error {
	ok, err := a.h.Manager.Cancel(ctx, udid)
	if err == nil && !ok {
		err = errors.New("no backup of this device is queued or running")
	}
	return err
}

func (a pageActions) ApproveDeletion(ctx context.Context, udid string) error {
	return ApproveDeletion(ctx, a.h.Manager, a.h.Stores, a.h.Settings().Effective(udid), udid, a.h.Logger)
}

// maxFailuresShown is how many recent failures the page lists per device.
const maxFailuresShown = 5

// StatusFeed builds the status page's View from the manager's status, the settings and the
// store records, and keeps what only events tell: recent failures with remedies, run
// durations and bytes, failures by class (since the app started).
type StatusFeed struct {
	m        *jobs.Manager
	settings func() *settings.Settings
	stores   *Stores
	now      func() time.Time

	mu   sync.Mutex
	devs map[string]*feedDevice
}

type feedDevice struct {
	started      time.Time
	lastProgress jobs.Progress
	lastDuration time.Duration
	lastBytes    int64
	transferred  int64
	failures     []statuspage.Failure // newest first
	byClass      map[string]int
}

// NewStatusFeed returns a feed; Run follows the events.
func NewStatusFeed(m *jobs.Manager, s func() *settings.Settings, stores *Stores, now func() time.Time) *StatusFeed {
	return &StatusFeed{m: m, settings: s, stores: stores, now: now, devs: map[string]*feedDevice{}}
}

// Run follows run events until ctx ends; pinger, when not nil, gets the dead-man pings in
// the order the runs start and end.
func (f *StatusFeed) Run(ctx context.Context, pinger *push.Pinger) {
	mask := jobs.EventRunStarted | jobs.EventProgress | jobs.EventRunFinished | jobs.EventRunFailed
	f.m.Bus().Follow(ctx, mask, func(ev jobs.Event) {
		f.record(ev)
		if pinger == nil {
			return
		}
		switch ev.Type {
		case jobs.EventRunStarted:
			pinger.Ping(ev.UDID, push.Start)
		case jobs.EventRunFinished:
			pinger.Ping(ev.UDID, push.Success)
		case jobs.EventRunFailed:
			pinger.Ping(ev.UDID, push.Failure)
		}
	})
}

func (f *StatusFeed) record(ev jobs.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.devs[ev.UDID]
	if d == nil {
		d = &feedDevice{byClass: map[string]int{}}
		f.devs[ev.UDID] = d
	}
	switch ev.Type {
	case jobs.EventRunStarted:
		d.started, d.lastProgress = ev.Time, jobs.Progress{}
	case jobs.EventProgress:
		d.lastProgress = ev.Progress
	case jobs.EventRunFinished:
		// The finished event carries the run's figures; nobody re-derives them.
		if r := ev.Run; r != nil {
			d.lastDuration, d.lastBytes = r.Duration, r.Bytes
		} else if !d.started.IsZero() {
			d.lastDuration, d.lastBytes = ev.Time.Sub(d.started), d.lastProgress.Bytes
		}
		d.transferred += d.lastBytes
	case jobs.EventRunFailed:
		if !d.started.IsZero() {
			d.lastDuration = ev.Time.Sub(d.started)
		}
		class := ev.Class
		if class == "" {
			class = ev.Result.String()
		}
		d.byClass[class]++
		d.failures = slices.Insert(d.failures, 0, statuspage.Failure{Time: ev.Time, Class: class, Message: ev.Err, Remedy: ev.Remedy})
		if len(d.failures) > maxFailuresShown {
			d.failures = d.failures[:maxFailuresShown]
		}
	}
}

// View implements statuspage.Source.
func (f *StatusFeed) View(ctx context.Context) statuspage.View {
	st := f.m.Status()
	cfg := f.settings()
	v := statuspage.View{Now: f.now(), Paused: st.Paused, SettingsProblem: st.SettingsError}
	for _, a := range cfg.Global.Alerts {
		v.Alerts = append(v.Alerts, settings.Redact(a.URL))
	}
	for _, d := range st.Devices {
		pd := statuspage.Device{
			UDID: d.UDID, Name: d.Name, Connected: d.Connected, State: stateText(d.State), Busy: d.State.Busy(),
			NextWhy: d.ReasonText, NextDue: d.NextCheck, Overdue: d.Overdue, LastSuccess: d.LastSuccess,
			Snapshots: []statuspage.Snapshot{},
		}
		if d.Connected {
			pd.Transport = map[settings.Transport]string{settings.TransportUSB: "USB", settings.TransportWiFi: "Wi-Fi"}[d.Transport]
		}
		if d.State.Busy() {
			pct := int(d.Progress.Percent)
			if d.Progress.Percent < 0 {
				pct = -1
			}
			pd.Progress = &statuspage.Progress{Phase: phaseText(d.Progress.Phase), Percent: pct, Bytes: d.Progress.Bytes, Files: d.Progress.Files}
		}
		if a := d.PendingApproval; a != nil {
			pd.PendingDeletion = &statuspage.Deletion{Snapshots: a.Snapshots, Bytes: a.Bytes}
		}
		if s, err := f.stores.ForDevice(ctx, cfg, d.UDID, ""); err == nil {
			b := ReadBackups(s, d.UDID)
			if b.Latest != nil {
				pd.LastBackup = &statuspage.Backup{Time: b.Latest.Time, Size: b.Latest.TotalSize,
					IOSVersion: b.Latest.Device.ProductVersion, Encrypted: b.Latest.Encrypted}
			}
			for _, sn := range b.Snapshots {
				pd.Snapshots = append(pd.Snapshots, statuspage.Snapshot{ID: sn.ID, Time: sn.Time, Size: sn.UniqueSize, Archived: sn.Pinned || sn.IsArchive()})
				pd.SnapshotsSize += sn.UniqueSize
			}
		} else {
			pd.NextWhy = "the backup location is not available: " + err.Error()
		}
		f.mu.Lock()
		if fd := f.devs[d.UDID]; fd != nil {
			pd.Failures = slices.Clone(fd.failures)
			pd.LastRunDuration, pd.LastRunBytes, pd.BytesTransferred = fd.lastDuration, fd.lastBytes, fd.transferred
			pd.FailuresByClass = map[string]int{}
			for k, n := range fd.byClass {
				pd.FailuresByClass[k] = n
			}
		}
		f.mu.Unlock()
		if len(pd.Failures) == 0 && d.LastError != "" {
			// From the run state: the failure happened before this start of the app. Its text
			// already holds the remedy (failure.Text), once.
			pd.Failures = []statuspage.Failure{{Class: d.LastResult.String(), Message: d.LastError}}
		}
		v.Devices = append(v.Devices, pd)
	}
	return v
}

func stateText(s jobs.DeviceState) string {
	switch s {
	case jobs.StateQueued:
		return "Waiting to back up"
	case jobs.StateWaitingPasscode:
		return "Waiting for the passcode on the device"
	case jobs.StateBackingUp:
		return "Backing up"
	case jobs.StateCommitting:
		return "Saving the backup"
	case jobs.StateFailed:
		return "Last backup failed"
	case jobs.StatePaused:
		return "Paused"
	}
	return "Idle"
}

func phaseText(p jobs.Phase) string {
	switch p {
	case jobs.PhaseWaitingPasscode:
		return "Enter the passcode on the device"
	case jobs.PhaseTransferring:
		return "Transferring"
	case jobs.PhaseCommitting:
		return "Saving"
	}
	return "Preparing"
}
