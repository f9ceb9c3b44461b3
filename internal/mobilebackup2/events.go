package mobilebackup2

import (
	"sync"
	"time"

	"snapback/internal/failure"
)

// Phase is where a backup run is.
type Phase int

// Phases in the order a run normally passes through them.
const (
	PhaseConnecting         Phase = iota // lockdown, services, DeviceLink handshake
	PhaseWaitingForPasscode              // iOS 16.1+: the device shows the passcode sheet
	PhasePreparing                       // Backup sent; device scans, asks for Status/Manifest
	PhaseTransferring                    // files are uploaded
	PhaseFinishing                       // moves, removals, final Status.plist
)

var phaseNames = [...]string{"connecting", "waiting-for-passcode", "preparing", "transferring", "finishing"}

// String returns a stable lowercase name.
func (p Phase) String() string {
	if int(p) >= 0 && int(p) < len(phaseNames) {
		return phaseNames[p]
	}
	return "unknown"
}

// MarshalText makes Phase readable in JSON.
func (p Phase) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// EventKind says what an Event reports.
type EventKind int

// Event kinds.
const (
	EventPhase             EventKind = iota // Phase changed
	EventProgress                           // Percent/bytes/files changed
	EventPasscodeRequested                  // passcode sheet shown on the device
	EventPasscodeDismissed                  // passcode sheet gone
	EventFinished                           // run succeeded (last event)
	EventFailed                             // run failed; Err is the classified *Error (last event)
)

var kindNames = [...]string{"phase", "progress", "passcode-requested", "passcode-dismissed", "finished", "failed"}

// String returns a stable lowercase name.
func (k EventKind) String() string {
	if int(k) >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// MarshalText makes EventKind readable in JSON.
func (k EventKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// Event is one observation of a run. Every event carries the current totals, so a consumer
// that drops events (see ChannelSink) still shows correct figures with the next one.
type Event struct {
	Kind          EventKind      `json:"kind"`
	Time          time.Time      `json:"time"`
	Phase         Phase          `json:"phase"`
	Percent       float64        `json:"percent"`        // device progress 0–100; -1 before the device reports any
	BytesDone     int64          `json:"bytes_done"`     // bytes received from the device so far
	FilesDone     int64          `json:"files_done"`     // files received so far
	BytesExpected int64          `json:"bytes_expected"` // device's announced total (UploadFiles [3]); 0 if unknown
	Err           *failure.Error `json:"-"`              // EventFailed only
	Message       string         `json:"message,omitempty"`
}

// Emitter serialises events from several goroutines (protocol loop, notification observer)
// into one callback, and keeps the running totals. The callback runs on the emitting
// goroutine and must return quickly; it must not call back into the run.
// The zero value drops everything.
type Emitter struct {
	mu    sync.Mutex
	fn    func(Event)
	now   func() time.Time
	state Event
	ended bool // a final event went out; later ones (a late notification) are dropped
	// shown and gone are when the passcode sheet last appeared and went away.
	shown, gone time.Time
	goneCh      chan struct{} // closed when the sheet shown last goes away
}

// waitDismissed waits up to d for the passcode sheet that is up to go away (the device's
// dismissed notification travels on another connection than its final result).
func (e *Emitter) waitDismissed(d time.Duration) {
	if e == nil {
		return
	}
	e.mu.Lock()
	ch := e.goneCh
	e.mu.Unlock()
	if ch == nil {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	}
}

func (e *Emitter) stamp() time.Time {
	if e.now == nil {
		return time.Now()
	}
	return e.now()
}

// passcodeTimes returns when the passcode sheet last appeared and when it went away (zero
// if not seen).
func (e *Emitter) passcodeTimes() (shown, gone time.Time) {
	if e == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.shown, e.gone
}

// NewEmitter returns an Emitter that stamps events with now(). fn may be nil.
func NewEmitter(fn func(Event), now func() time.Time) *Emitter {
	if now == nil {
		now = time.Now
	}
	return &Emitter{fn: fn, now: now, state: Event{Percent: -1}}
}

// update applies change to the running state and emits the result as kind.
func (e *Emitter) update(kind EventKind, change func(*Event)) {
	if e == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ended {
		return
	}
	e.ended = kind == EventFinished || kind == EventFailed
	if change != nil {
		change(&e.state)
	}
	ev := e.state
	ev.Kind = kind
	if e.now != nil {
		ev.Time = e.now()
	}
	if kind != EventFailed {
		ev.Err = nil
	}
	if e.fn != nil {
		e.fn(ev)
	}
}

// Begin emits the initial phase event (connecting).
func (e *Emitter) Begin() { e.update(EventPhase, nil) }

// SetPhase emits a phase change if p is later than the current phase.
func (e *Emitter) SetPhase(p Phase) {
	if e == nil {
		return
	}
	e.mu.Lock()
	// Phases only move forward: the device uploads Manifest.db after it has started moving
	// files, and a bar that jumps back to "transferring" would mislead.
	forward := p > e.state.Phase
	e.mu.Unlock()
	if forward {
		e.update(EventPhase, func(s *Event) { s.Phase = p })
	}
}

// Phase returns the current phase.
func (e *Emitter) Phase() Phase {
	if e == nil {
		return PhaseConnecting
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.state.Phase
}

// PasscodeRequested reports the device's passcode sheet (from notification_proxy).
func (e *Emitter) PasscodeRequested() {
	e.update(EventPasscodeRequested, func(s *Event) {
		e.shown, e.gone = e.stamp(), time.Time{}
		if e.goneCh == nil {
			e.goneCh = make(chan struct{})
		}
		if s.Phase <= PhasePreparing {
			s.Phase = PhaseWaitingForPasscode
		}
	})
}

// PasscodeDismissed reports that the passcode sheet went away.
func (e *Emitter) PasscodeDismissed() {
	e.update(EventPasscodeDismissed, func(s *Event) {
		e.gone = e.stamp()
		if e.goneCh != nil {
			close(e.goneCh)
			e.goneCh = nil
		}
		if s.Phase == PhaseWaitingForPasscode {
			s.Phase = PhasePreparing
		}
	})
}

// Finished emits the final success event.
func (e *Emitter) Finished() {
	e.update(EventFinished, func(s *Event) { s.Percent = 100 })
}

// Failed emits the final failure event.
func (e *Emitter) Failed(err *failure.Error) {
	e.update(EventFailed, func(s *Event) { s.Err = err; s.Message = err.Error() })
}

// Snapshot returns the current totals.
func (e *Emitter) Snapshot() Event {
	if e == nil {
		return Event{}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.state
}

// ChannelSink adapts a channel to an event callback that never blocks: when the channel is
// full the event is dropped (totals travel with every event, so nothing is lost for good),
// except final events, which replace the oldest queued one.
func ChannelSink(ch chan Event) func(Event) {
	return func(ev Event) {
		select {
		case ch <- ev:
			return
		default:
		}
		if (ev.Kind != EventFinished && ev.Kind != EventFailed) || cap(ch) == 0 {
			return
		}
		for {
			select {
			case <-ch:
			default:
			}
			select {
			case ch <- ev:
				return
			default:
			}
		}
	}
}
