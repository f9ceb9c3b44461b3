package app

import (
	"context"

	"github.com/godbus/dbus/v5"
)

// Wake turns logind's PrepareForSleep(false) signal, sent when the system resumes, into a
// wake-up for the schedule: timers stop while a laptop sleeps, so the schedule must look
// again at once instead of waiting for the next minute tick. conn is normally the system
// bus. The returned channel has a buffer of one and coalesces wake-ups; it is never closed.
// The forwarding goroutine is owned by this call and stops with ctx.
func Wake(ctx context.Context, conn *dbus.Conn) (<-chan struct{}, error) {
	if err := conn.AddMatchSignal(
		dbus.WithMatchInterface("org.freedesktop.login1.Manager"),
		dbus.WithMatchMember("PrepareForSleep"),
	); err != nil {
		return nil, err
	}
	signals := make(chan *dbus.Signal, 4)
	conn.Signal(signals)
	wake := make(chan struct{}, 1)
	go func() {
		defer conn.RemoveSignal(signals)
		forwardResumes(ctx, signals, wake)
	}()
	return wake, nil
}

// forwardResumes turns each PrepareForSleep(false) on signals into a coalesced send on wake,
// until ctx ends or signals is closed: godbus closes it with the connection (the bus
// restarted or went away), after which the minute tick alone notices a resume. Reading a
// closed channel on, as this loop once did, spins a core for the daemon's lifetime.
func forwardResumes(ctx context.Context, signals <-chan *dbus.Signal, wake chan<- struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case sig, ok := <-signals:
			if !ok {
				return
			}
			if sig.Name != "org.freedesktop.login1.Manager.PrepareForSleep" || len(sig.Body) != 1 {
				continue
			}
			// true: going to sleep; false: just woke up.
			if sleeping, ok := sig.Body[0].(bool); ok && !sleeping {
				select {
				case wake <- struct{}{}:
				default:
				}
			}
		}
	}
}
