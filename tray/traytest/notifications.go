//go:build linux

package traytest

import (
	"sync"
	"testing"

	"github.com/godbus/dbus/v5"
)

// Notification is one Notify call as the server saw it.
type Notification struct {
	App, Icon, Summary, Body string
	Hints                    map[string]dbus.Variant
	Timeout                  int32
}

// Notifications is a notification daemon: it owns org.freedesktop.Notifications on the
// session bus and records every Notify call.
type Notifications struct {
	mu   sync.Mutex
	got  []Notification
	next uint32
}

// StartNotifications claims org.freedesktop.Notifications on the session bus; it is released
// when the test ends.
func StartNotifications(t *testing.T) *Notifications {
	t.Helper()
	conn, err := dbus.ConnectSessionBus()
	if err != nil {
		t.Fatalf("session bus: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	s := &Notifications{}
	if err := conn.Export(notificationMethods{s}, "/org/freedesktop/Notifications", "org.freedesktop.Notifications"); err != nil {
		t.Fatal(err)
	}
	if reply, err := conn.RequestName("org.freedesktop.Notifications", dbus.NameFlagDoNotQueue); err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("claim notifications name: %v %v", reply, err)
	}
	return s
}

// Calls returns the notifications received so far, oldest first.
func (s *Notifications) Calls() []Notification {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Notification(nil), s.got...)
}

// notificationMethods is what the server exports.
type notificationMethods struct{ s *Notifications }

func (m notificationMethods) Notify(app string, replaces uint32, icon, summary, body string, actions []string, hints map[string]dbus.Variant, timeout int32) (uint32, *dbus.Error) {
	s := m.s
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, Notification{app, icon, summary, body, hints, timeout})
	s.next++
	return s.next, nil
}

func (notificationMethods) GetCapabilities() ([]string, *dbus.Error) {
	return []string{"body", "icon-static"}, nil
}

func (notificationMethods) GetServerInformation() (string, string, string, string, *dbus.Error) {
	return "snapback-test", "snapback", "1", "1.2", nil
}

func (notificationMethods) CloseNotification(uint32) *dbus.Error { return nil }
