package notify

import (
	"sync"
	"time"
)

// Policy says how often one kind of notification may be shown for one device.
type Policy struct {
	// Repeat is the shortest time between two notifications of this kind for a device.
	Repeat time.Duration
	// PerStreak caps how many are shown until the streak ends (0 = no cap). A streak of
	// failures, missing disks or overdue warnings ends with the device's next completed backup.
	PerStreak int
}

// DefaultPolicies: a passcode prompt is always announced (each prompt is a new three-minute
// chance) but not twice for one prompt; failures announce the first one and, if they go on for
// an hour, one reminder, then stay quiet until a backup succeeds, so ten failures in a row give
// at most two notifications; daily reminders for overdue and approval.
var DefaultPolicies = map[Kind]Policy{
	PasscodeRequested: {Repeat: 30 * time.Second},
	TrustRequested:    {Repeat: 30 * time.Second},
	Completed:         {Repeat: 30 * time.Second},
	Failed:            {Repeat: time.Hour, PerStreak: 2},
	DiskMissing:       {Repeat: time.Hour, PerStreak: 2},
	Overdue:           {Repeat: 20 * time.Hour},
	ApprovalNeeded:    {Repeat: 20 * time.Hour},
	SettingsBroken:    {Repeat: time.Hour, PerStreak: 2},
	DamageFound:       {Repeat: 20 * time.Hour},
	ActionFailed:      {}, // the answer to a click: every click gets one
}

// streakKinds end when a device completes a backup.
var streakKinds = []Kind{Failed, DiskMissing, Overdue}

// Gate de-duplicates and rate-limits notifications before they reach a Notifier.
type Gate struct {
	next     Notifier
	now      func() time.Time
	policies map[Kind]Policy

	mu   sync.Mutex
	sent map[gateKey]*history
}

type gateKey struct {
	kind Kind
	udid string
}

type history struct {
	last  time.Time
	count int
}

// NewGate returns a Gate in front of next that reads the time from now (inject a fake clock in
// tests) and applies DefaultPolicies.
func NewGate(next Notifier, now func() time.Time) *Gate {
	return &Gate{next: next, now: now, policies: DefaultPolicies, sent: map[gateKey]*history{}}
}

// Notify passes m on unless its policy holds it back; a held-back message is not an error.
// A settings problem being fixed or a device completing a backup ends the matching streaks.
func (g *Gate) Notify(m Message) error {
	if !g.allow(m) {
		return nil
	}
	return g.next.Notify(m)
}

// Allowed reports whether Notify would pass m on now, without recording anything.
func (g *Gate) Allowed(m Message) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	ok, _ := g.check(m, g.now())
	return ok
}

func (g *Gate) allow(m Message) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	ok, h := g.check(m, now)
	if !ok {
		return false
	}
	if m.Kind == Completed {
		for _, k := range streakKinds {
			delete(g.sent, gateKey{k, m.UDID})
		}
	}
	h.last = now
	h.count++
	g.sent[gateKey{m.Kind, m.UDID}] = h
	return true
}

func (g *Gate) check(m Message, now time.Time) (bool, *history) {
	p := g.policies[m.Kind]
	h, seen := g.sent[gateKey{m.Kind, m.UDID}]
	if !seen {
		return true, &history{}
	}
	if p.PerStreak > 0 && h.count >= p.PerStreak {
		return false, h
	}
	// A clock that went backwards (manual change, NTP step) counts as "long ago", so the user is
	// not silenced for the size of the jump.
	if d := now.Sub(h.last); d >= 0 && d < p.Repeat {
		return false, h
	}
	copied := *h
	return true, &copied
}

// SettingsFixed ends the broken-settings streak, so the next problem is announced at once.
func (g *Gate) SettingsFixed() {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.sent, gateKey{SettingsBroken, ""})
}
