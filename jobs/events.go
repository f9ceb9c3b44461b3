package jobs

import (
	"context"
	"fmt"
	"math/bits"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// EventType is the kind of an Event. Types are bits so a subscriber can ask for several.
type EventType uint32

// Event types.
const (
	EventDeviceAttached    EventType = 1 << iota // a device appeared (USB or Wi-Fi)
	EventDeviceDetached                          // a device went away
	EventRunQueued                               // a backup was queued (Manual says whether by the user)
	EventRunStarted                              // a backup started
	EventProgress                                // Progress changed
	EventPasscodeRequested                       // the device shows the passcode prompt: tell the user now
	EventPasscodeDismissed                       // the passcode was entered (or the prompt went away)
	EventRunFinished                             // a backup succeeded
	EventRunFailed                               // a backup failed; Result and Err say why
	EventOverdue                                 // no successful backup for OverdueDays days
	EventApprovalNeeded                          // Approval waits for the user's permission
	EventSettingsReloaded                        // the settings file was re-read and applied
	EventSettingsInvalid                         // an edit of the settings file was rejected; Err says why
	EventTrustRequested                          // the device shows "Trust This Computer?": tell the user now
	EventDamageFound                             // the scrub after a backup found Damaged stored files changed on disk

	// AllEvents subscribes to every type.
	AllEvents EventType = 1<<iota - 1
)

var eventNames = [...]string{"DeviceAttached", "DeviceDetached", "RunQueued", "RunStarted", "Progress",
	"PasscodeRequested", "PasscodeDismissed", "RunFinished", "RunFailed", "Overdue", "ApprovalNeeded",
	"SettingsReloaded", "SettingsInvalid", "TrustRequested", "DamageFound"}

func (t EventType) String() string {
	if bits.OnesCount32(uint32(t)) == 1 {
		if i := bits.TrailingZeros32(uint32(t)); i < len(eventNames) {
			return eventNames[i]
		}
	}
	var parts []string
	for i, n := range eventNames {
		if t&(1<<i) != 0 {
			parts = append(parts, n)
		}
	}
	if len(parts) == 0 || t&^AllEvents != 0 {
		return fmt.Sprintf("EventType(%#x)", uint32(t))
	}
	return strings.Join(parts, "|")
}

// Event is one thing that happened. Fields not relevant to the Type are zero.
type Event struct {
	Seq  uint64 // increases by one per published event
	Type EventType
	Time time.Time
	UDID string
	Name string // device name, for notifications

	Manual      bool       // RunQueued/RunStarted/RunFinished/RunFailed: a "Back Up Now" run
	Progress    Progress   // Progress, PasscodeRequested
	Result      Result     // RunFinished, RunFailed
	Err         string     // RunFailed, SettingsInvalid: the reason in words (cause included, once)
	Class       string     // RunFailed: the failure class (internal/failure), when classified
	Remedy      string     // RunFailed: what the user can do, once (never repeated in Err)
	Run         *RunResult // RunFinished: transport, bytes, size, files, duration, snapshot, warnings
	OverdueDays int        // Overdue
	Approval    *Approval
	Unreadable  int // RunFinished: files the device could not read (recorded in the snapshot)
	Damaged     int // DamageFound: stored files whose content changed on disk
}

// DefaultBufferSize is the number of events a subscriber may fall behind before it loses
// events.
const DefaultBufferSize = 64

// Bus delivers events to subscribers. Publishing never blocks: a subscriber whose buffer is
// full loses the event, and its Dropped count says how many it lost. Safe for concurrent
// use. The zero value is not usable; use NewBus.
type Bus struct {
	mu       sync.Mutex
	seq      uint64
	size     int
	subs     map[*Subscription]struct{}
	snapshot func() Status
}

// NewBus returns a bus with per-subscriber buffers of size events (DefaultBufferSize when
// size <= 0).
func NewBus(size int) *Bus {
	if size <= 0 {
		size = DefaultBufferSize
	}
	return &Bus{size: size, subs: map[*Subscription]struct{}{}}
}

// setSnapshot installs the function that gives subscribers the current state. The manager
// installs its Status.
func (b *Bus) setSnapshot(fn func() Status) {
	b.mu.Lock()
	b.snapshot = fn
	b.mu.Unlock()
}

// Publish stamps e with the next sequence number and delivers it to every subscriber whose
// mask includes its type. It never blocks.
func (b *Bus) Publish(e Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seq++
	e.Seq = b.seq
	for s := range b.subs {
		if s.mask&e.Type == 0 {
			continue
		}
		select {
		case s.ch <- e:
		default:
			s.dropped.Add(1)
		}
	}
}

// Subscription is one subscriber's view of the bus.
type Subscription struct {
	// C delivers the events; it is closed by Close.
	C <-chan Event
	// Initial is the state of the app at the moment of subscribing: events on C are the
	// changes after it (an event may repeat a change Initial already shows).
	Initial Status

	ch      chan Event
	mask    EventType
	bus     *Bus
	dropped atomic.Uint64
}

// Subscribe registers a subscriber for the event types in mask.
func (b *Bus) Subscribe(mask EventType) *Subscription {
	b.mu.Lock()
	defer b.mu.Unlock()
	ch := make(chan Event, b.size)
	s := &Subscription{C: ch, ch: ch, mask: mask, bus: b}
	// Taken under the bus lock, so no event published after the snapshot is missed.
	if b.snapshot != nil {
		s.Initial = b.snapshot()
	}
	b.subs[s] = struct{}{}
	return s
}

// Dropped is the number of events this subscriber lost because its buffer was full.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Close unsubscribes and closes C. Calling it twice is harmless.
func (s *Subscription) Close() {
	s.bus.mu.Lock()
	defer s.bus.mu.Unlock()
	if _, ok := s.bus.subs[s]; ok {
		delete(s.bus.subs, s)
		close(s.ch)
	}
}

// Follow subscribes to the event types in mask and calls fn with each event, in order, until
// ctx ends or the bus closes the subscription. It blocks; the subscription is its own.
func (b *Bus) Follow(ctx context.Context, mask EventType, fn func(Event)) {
	sub := b.Subscribe(mask)
	defer sub.Close()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-sub.C:
			if !ok {
				return
			}
			fn(e)
		}
	}
}
