//go:build linux

package app

import (
	"context"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"snapback/tray/traytest"
)

// TestWakeFollowsLogindResume runs on a real D-Bus session bus: a PrepareForSleep(false)
// signal, as logind sends on resume, wakes the schedule; PrepareForSleep(true) does not.
func TestWakeFollowsLogindResume(t *testing.T) {
	if !traytest.RunUnderSessionBus(t, "TestWakeFollowsLogindResume", "SNAPBACK_WAKE_CHILD", "60s") {
		return
	}
	listen, err := dbus.ConnectSessionBus()
	if err != nil {
		t.Fatal(err)
	}
	defer listen.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wake, err := Wake(ctx, listen)
	if err != nil {
		t.Fatal(err)
	}
	logind, err := dbus.ConnectSessionBus()
	if err != nil {
		t.Fatal(err)
	}
	defer logind.Close()
	emit := func(sleeping bool) {
		if err := logind.Emit("/org/freedesktop/login1", "org.freedesktop.login1.Manager.PrepareForSleep", sleeping); err != nil {
			t.Fatal(err)
		}
	}
	emit(true)
	select {
	case <-wake:
		t.Fatal("going to sleep woke the schedule")
	case <-time.After(300 * time.Millisecond):
	}
	emit(false)
	select {
	case <-wake:
	case <-time.After(5 * time.Second):
		t.Fatal("resume did not wake the schedule")
	}
}

// When the bus connection closes (the system bus restarted), godbus closes the signal
// channel: the forwarding ends instead of spinning on it for the daemon's lifetime, and the
// schedule is not woken by it.
func TestWakeForwardingEndsWithTheConnection(t *testing.T) {
	signals := make(chan *dbus.Signal)
	close(signals)
	wake := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() { forwardResumes(context.Background(), signals, wake); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("forwardResumes still runs after its signal channel closed")
	}
	if len(wake) != 0 {
		t.Error("a closed connection woke the schedule")
	}
}
