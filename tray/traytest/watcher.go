//go:build linux

package traytest

import (
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
)

// Registration is one RegisterStatusNotifierItem call the watcher received.
type Registration struct {
	Sender  string // unique bus name of the registering connection
	Service string // what it passed: fyne's systray passes its object path
}

// Watcher is the panel's side of the protocol: it owns org.kde.StatusNotifierWatcher on the
// session bus and records which items register.
type Watcher struct {
	conn       *dbus.Conn
	registered chan Registration
}

// StartWatcher claims org.kde.StatusNotifierWatcher on the session bus; it is released when
// the test ends.
func StartWatcher(t *testing.T) *Watcher {
	t.Helper()
	conn, err := dbus.ConnectSessionBus()
	if err != nil {
		t.Fatalf("session bus: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	w := &Watcher{conn: conn, registered: make(chan Registration, 8)}
	if err := conn.Export(watcherMethods{w}, "/StatusNotifierWatcher", "org.kde.StatusNotifierWatcher"); err != nil {
		t.Fatal(err)
	}
	if reply, err := conn.RequestName("org.kde.StatusNotifierWatcher", dbus.NameFlagDoNotQueue); err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("claim watcher name: %v %v", reply, err)
	}
	return w
}

// Close gives up the watcher's name, as a panel that quits or crashes does. The name is
// released before the connection closes, so a new watcher can claim it at once.
func (w *Watcher) Close() {
	w.conn.ReleaseName("org.kde.StatusNotifierWatcher")
	w.conn.Close()
}

// WaitRegistered returns the next registration, failing the test after timeout.
func (w *Watcher) WaitRegistered(t *testing.T, timeout time.Duration) Registration {
	t.Helper()
	select {
	case r := <-w.registered:
		return r
	case <-time.After(timeout):
		t.Fatalf("no item called RegisterStatusNotifierItem on the watcher within %v", timeout)
		return Registration{}
	}
}

// watcherMethods is what the watcher exports, kept apart so Watcher's own methods stay off the bus.
type watcherMethods struct{ w *Watcher }

func (m watcherMethods) RegisterStatusNotifierItem(service string, sender dbus.Sender) *dbus.Error {
	m.w.registered <- Registration{Sender: string(sender), Service: service}
	return nil
}

func (m watcherMethods) RegisterStatusNotifierHost(string) *dbus.Error { return nil }
