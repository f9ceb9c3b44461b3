package jobs

import (
	"slices"
	"time"

	"snapback/settings"
)

// RunRequest is one backup to perform.
type RunRequest struct {
	UDID string
	Name string
	// Manual is set for "Back Up Now": it goes ahead of automatic runs and ignores the
	// schedule (window, pause, conditions).
	Manual    bool
	Transport settings.Transport // link the device is connected over
	Settings  settings.DeviceSettings
	QueuedAt  time.Time
}

// queue is the ordered list of runs waiting for a slot: manual runs first, each group in
// arrival order; at most one entry per device. Owned by the manager loop; not safe for
// concurrent use.
type queue struct {
	items []RunRequest
}

// push adds req unless its device is already queued; a manual request upgrades a queued
// automatic one. It reports whether the queue changed.
func (q *queue) push(req RunRequest) bool {
	if i := q.index(req.UDID); i >= 0 {
		if !req.Manual || q.items[i].Manual {
			return false
		}
		q.items = slices.Delete(q.items, i, i+1)
	}
	at := len(q.items)
	if req.Manual {
		at = slices.IndexFunc(q.items, func(r RunRequest) bool { return !r.Manual })
		if at < 0 {
			at = len(q.items)
		}
	}
	q.items = slices.Insert(q.items, at, req)
	return true
}

// pop removes and returns the first request whose device is not busy.
func (q *queue) pop(busy func(udid string) bool) (RunRequest, bool) {
	for i, r := range q.items {
		if !busy(r.UDID) {
			q.items = slices.Delete(q.items, i, i+1)
			return r, true
		}
	}
	return RunRequest{}, false
}

// remove drops the request of udid; it reports whether there was one.
func (q *queue) remove(udid string) bool {
	i := q.index(udid)
	if i < 0 {
		return false
	}
	q.items = slices.Delete(q.items, i, i+1)
	return true
}

func (q *queue) index(udid string) int {
	return slices.IndexFunc(q.items, func(r RunRequest) bool { return r.UDID == udid })
}

func (q *queue) get(udid string) (RunRequest, bool) {
	if i := q.index(udid); i >= 0 {
		return q.items[i], true
	}
	return RunRequest{}, false
}

func (q *queue) len() int { return len(q.items) }
