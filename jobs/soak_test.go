package jobs

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"snapback/internal/failure"
	"snapback/settings"
)

// TestSoak60Days drives the manager minute by minute through 60 simulated days (across the
// spring DST change in Europe/Berlin) with four devices that come and go, manual runs on some
// days and failing runs on others, and checks the promise of the schedule: exactly one
// successful automatic backup per device per window day on which it was connected in its
// window long enough to retry, none after a manual run that day, none on days that fail
// throughout, and never two runs of a device at once nor more than the global limit.
func TestSoak60Days(t *testing.T) {
	loc := berlin(t)
	const days = 60
	s := mustSettings(t, `
location: /backups
schedule: {window: "09:00-23:00", retry_delay: 10m, max_retries: 3}
conditions: {min_battery: 0}
devices:
  - {udid: 00008110-00000000000000AA}
  - {udid: 00008110-00000000000000BB, transport: wifi, schedule: {window: "18:00-22:00"}}
  - {udid: 00008110-00000000000000CC, schedule: {window: "22:00-06:00"}}
  - {udid: 00008110-00000000000000DD, schedule: {window: "00:00-24:00"}}
`)
	start := time.Date(2026, 3, 1, 0, 0, 0, 0, loc)
	h := newHarness(t, start, s, filepath.Join(t.TempDir(), "state.json"), 2)

	type plan struct {
		from, to time.Time // connected during [from, to)
		manual   time.Time // zero: no manual run
		failN    int       // automatic attempts that fail before one succeeds; -1: all fail
	}
	rng := rand.New(rand.NewPCG(1, 2))
	udids := []string{devA, devB, devC, devD}
	plans := map[string][]plan{}
	wallMin := func(day, min int) time.Time { return time.Date(2026, 3, 1+day, 0, min, 0, 0, loc) }
	for day := range days {
		for _, u := range udids {
			if rng.IntN(5) == 0 {
				continue // away all day
			}
			w := s.Effective(u).Schedule.Window
			var from, to int
			switch u {
			case devC: // evenings into the night: 20:00..23:00 until 01:00..07:00
				from, to = 20*60+rng.IntN(180), 24*60+60+rng.IntN(360)
			default:
				from = rng.IntN(20 * 60)
				to = min(from+60+rng.IntN(10*60), 24*60-1)
			}
			p := plan{from: wallMin(day, from), to: wallMin(day, to)}
			if from < w.Start && rng.IntN(4) == 0 {
				p.manual = wallMin(day, from+1) // before the window: the day's backup
			}
			switch r := rng.IntN(20); {
			case r < 3:
				p.failN = 1 + rng.IntN(2)
			case r == 3:
				p.failN = -1
			}
			plans[u] = append(plans[u], p)
		}
	}

	// The runner fails automatic runs according to the plan of the device's current session.
	var mu sync.Mutex
	failures := map[string]int{} // per device+session: failed attempts so far
	current := map[string]*plan{}
	h.runner.fn = func(ctx context.Context, req RunRequest, progress func(Progress)) (RunResult, error) {
		mu.Lock()
		defer mu.Unlock()
		p := current[req.UDID]
		if p == nil {
			return RunResult{}, failure.New(failure.LinkLost, nil)
		}
		key := fmt.Sprint(req.UDID, p.from.Unix())
		if !req.Manual && (p.failN < 0 || failures[key] < p.failN) {
			failures[key]++
			if failures[key]%2 == 0 {
				return RunResult{}, failure.New(failure.DeviceLocked, nil)
			}
			return RunResult{}, errors.New("link dropped")
		}
		progress(Progress{Phase: PhaseCommitting, Percent: 100})
		return RunResult{Snapshot: "s", Bytes: 1}, nil
	}

	// Oracle inputs, gathered minute by minute: connected in-window minutes per window day.
	inWindow := map[string]map[civil]int{}
	manualDay := map[string]map[civil]bool{}
	failAllDay := map[string]map[civil]bool{}
	for _, u := range udids {
		inWindow[u], manualDay[u], failAllDay[u] = map[civil]int{}, map[civil]bool{}, map[civil]bool{}
	}

	end := start.AddDate(0, 0, days)
	next := map[string]int{} // index of the next plan per device
	t0 := time.Now()
	for now := start; now.Before(end); now = now.Add(time.Minute) {
		h.clock.Set(now)
		for _, u := range udids {
			ps := plans[u]
			i := next[u]
			if cur := current[u]; cur != nil && !now.Before(cur.to) {
				mu.Lock()
				current[u] = nil
				mu.Unlock()
				h.devs.detach(t, u)
				next[u]++
				i++
			}
			if i < len(ps) && current[u] == nil && !now.Before(ps[i].from) && now.Before(ps[i].to) {
				mu.Lock()
				current[u] = &ps[i]
				mu.Unlock()
				tr := settings.TransportUSB
				if u == devB {
					tr = settings.TransportWiFi
				}
				h.devs.attach(t, u, tr)
			}
			if cur := current[u]; cur != nil {
				w := s.Effective(u).Schedule.Window
				wd := windowDay(now, w)
				if w.Contains(minuteOfDay(now)) {
					inWindow[u][wd]++
				}
				if cur.failN < 0 {
					failAllDay[u][wd] = true
				}
				if cur.manual.Equal(now) {
					h.idle()
					if err := h.m.BackUpNow(context.Background(), u); err != nil {
						t.Fatalf("%s %v: BackUpNow: %v", u, now, err)
					}
					manualDay[u][wd] = true
				}
			}
		}
		h.step()
	}
	elapsed := time.Since(t0)

	// Check against the oracle.
	type key struct {
		u string
		d civil
	}
	autoOK, autoAttempts, manualOK := map[key]int{}, map[key]int{}, map[key]time.Time{}
	for _, r := range h.runner.records() {
		k := key{r.req.UDID, windowDay(r.started, s.Effective(r.req.UDID).Schedule.Window)}
		switch {
		case r.req.Manual && r.err == nil:
			manualOK[k] = r.started
		case !r.req.Manual:
			autoAttempts[k]++
			if !manualOK[k].IsZero() {
				t.Errorf("%s %v: automatic run at %v after the manual run at %v", k.u, k.d, r.started, manualOK[k])
			}
			if r.err == nil {
				autoOK[k]++
			}
		}
	}
	var total, checkedDays int
	for _, u := range udids {
		for d := civilOf(start); d != civilOf(end); d = d.next() {
			k := key{u, d}
			n := autoOK[k]
			total += n
			want := -1 // -1: at most one
			switch {
			case manualDay[u][d]:
				want = 0
			case failAllDay[u][d]:
				want = 0
				if autoAttempts[k] > 1+3 {
					t.Errorf("%s %v: %d attempts on a failing day, want at most %d", u, d, autoAttempts[k], 1+3)
				}
			case inWindow[u][d] >= 120: // room for two failures and their retries (10m, 20m)
				want = 1
			case inWindow[u][d] == 0:
				want = 0
			}
			if want >= 0 {
				checkedDays++
			}
			if (want >= 0 && n != want) || n > 1 {
				t.Errorf("%s %v: %d automatic backups (manual=%v, connected in window %d min, fail all=%v), want %d",
					u, d, n, manualDay[u][d], inWindow[u][d], failAllDay[u][d], want)
			}
		}
	}
	if h.runner.overlap || h.runner.maxActive > 2 {
		t.Errorf("overlap=%v maxActive=%d", h.runner.overlap, h.runner.maxActive)
	}
	runs := len(h.runner.records())
	t.Logf("%d days x %d devices in %v: %d runs, %d automatic successes, %d manual, %d device-days checked exactly",
		days, len(udids), elapsed, runs, total, len(manualOK), checkedDays)
	if checkedDays < 150 || len(manualOK) < 10 {
		t.Errorf("scenario too thin: %d device-days checked, %d manual runs", checkedDays, len(manualOK))
	}
}
