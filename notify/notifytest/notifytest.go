// Package notifytest provides test doubles for notify.Notifier.
package notifytest

import (
	"sync"

	"snapback/notify"
)

// Recorder is a notify.Notifier that remembers every message. Set Err to make Notify fail
// (the message is still recorded). Safe for concurrent use.
type Recorder struct {
	mu   sync.Mutex
	msgs []notify.Message
	Err  error
}

// Notify records m and returns r.Err.
func (r *Recorder) Notify(m notify.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, m)
	return r.Err
}

// Messages returns a copy of the recorded messages, oldest first.
func (r *Recorder) Messages() []notify.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]notify.Message(nil), r.msgs...)
}

// Count returns how many recorded messages are of kind k.
func (r *Recorder) Count(k notify.Kind) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.msgs {
		if m.Kind == k {
			n++
		}
	}
	return n
}
