package device

import (
	"context"
	"fmt"
	"net"
	"sync"

	"snapback/internal/plistio"
)

// Notification names used around a backup (protocol.md §5).
const (
	NotifySyncWillStart     = "com.apple.itunes-mobdev.syncWillStart"
	NotifySyncLockRequest   = "com.apple.itunes-mobdev.syncLockRequest"
	NotifySyncDidStart      = "com.apple.itunes-mobdev.syncDidStart"
	NotifySyncDidFinish     = "com.apple.itunes-mobdev.syncDidFinish"
	NotifySyncCancel        = "com.apple.itunes-client.syncCancelRequest"
	NotifySyncSuspend       = "com.apple.itunes-client.syncSuspendRequest"
	NotifySyncResume        = "com.apple.itunes-client.syncResumeRequest"
	NotifyDomainChanged     = "com.apple.mobile.backup.domain_changed"
	NotifyPasscodeShown     = "com.apple.LocalAuthentication.ui.presented"
	NotifyPasscodeDismissed = "com.apple.LocalAuthentication.ui.dismissed"
)

// Notifications is a notification_proxy connection that can post and observe at once.
// Observed notifications arrive on C; a reader goroutine owned by the connection delivers
// them without ever blocking on a slow consumer (the oldest queued one is dropped instead),
// unlike go-ios's observer, whose reader blocks on an unbuffered channel.
type Notifications struct {
	conn net.Conn
	wmu  sync.Mutex
	c    chan string
	done chan struct{}
	err  error
}

// StartNotifications starts notification_proxy on the session and its reader goroutine.
func (s *Session) StartNotifications(ctx context.Context) (*Notifications, error) {
	c, err := s.StartService(ctx, ServiceNotification, false)
	if err != nil {
		return nil, err
	}
	return NewNotifications(c), nil
}

// NewNotifications wraps an established notification_proxy connection.
func NewNotifications(c net.Conn) *Notifications {
	n := &Notifications{conn: c, c: make(chan string, 32), done: make(chan struct{})}
	go n.read()
	return n
}

// C delivers observed notification names. It is closed when the connection ends.
func (n *Notifications) C() <-chan string { return n.c }

func (n *Notifications) read() {
	defer close(n.done)
	defer close(n.c)
	for {
		var m map[string]any
		if err := plistio.ReadPlist(n.conn, maxLockdownFrame, &m); err != nil {
			n.err = err
			return
		}
		switch m["Command"] {
		case "RelayNotification":
			name, _ := m["Name"].(string)
			n.deliver(name)
		case "ProxyDeath":
			return
		}
	}
}

// deliver queues name, dropping the oldest queued name when the consumer lags.
func (n *Notifications) deliver(name string) {
	for {
		select {
		case n.c <- name:
			return
		default:
		}
		select {
		case <-n.c:
		default:
		}
	}
}

func (n *Notifications) send(m map[string]any) error {
	n.wmu.Lock()
	defer n.wmu.Unlock()
	return plistio.WritePlist(n.conn, m, plistio.XML)
}

// Observe asks the device to relay the named notifications.
func (n *Notifications) Observe(names ...string) error {
	for _, name := range names {
		if err := n.send(map[string]any{"Command": "ObserveNotification", "Name": name}); err != nil {
			return fmt.Errorf("observe %s: %w", name, err)
		}
	}
	return nil
}

// Post posts a notification on the device (go-ios has no PostNotification).
func (n *Notifications) Post(name string) error {
	if err := n.send(map[string]any{"Command": "PostNotification", "Name": name}); err != nil {
		return fmt.Errorf("post %s: %w", name, err)
	}
	return nil
}

// Close sends Shutdown, waits until the device answers ProxyDeath (or ctx ends), then
// closes the connection and waits for the reader goroutine.
func (n *Notifications) Close(ctx context.Context) error {
	err := n.send(map[string]any{"Command": "Shutdown"})
	if err == nil {
		select {
		case <-n.done:
		case <-ctx.Done():
		}
	}
	cerr := n.conn.Close()
	<-n.done
	if err != nil {
		return err
	}
	return cerr
}
