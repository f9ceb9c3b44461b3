package backupsim

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"snapback/internal/devicelink"
	"snapback/internal/testenv"
)

// handshake performs the host side of the version exchange and Hello on c.
func handshake(t *testing.T, c *devicelink.Conn) {
	t.Helper()
	if m, err := c.ReadMessage(); err != nil || m.Name() != devicelink.VersionExchange {
		t.Fatalf("version exchange: %v %v", m, err)
	}
	c.WriteMessage(devicelink.VersionExchange, devicelink.VersionsOk, uint64(400))
	if m, err := c.ReadMessage(); err != nil || m.Name() != devicelink.DeviceReady {
		t.Fatalf("device ready: %v %v", m, err)
	}
	c.SendProcessMessage(map[string]any{"MessageName": "Hello", "SupportedProtocolVersions": []any{2.0, 2.1}})
	if _, err := c.ReadMessage(); err != nil {
		t.Fatal(err)
	}
}

// Cancelling ctx while the device waits for the passcode ends Serve promptly and closes
// the link.
func TestServeCancelDuringPasscode(t *testing.T) {
	yes := true
	d := newTestDevice(t, Options{Files: 10, PasscodeRequired: &yes, PasscodeDelay: -1, PasscodeTimeout: time.Hour})
	hostEnd, devEnd := net.Pipe()
	defer hostEnd.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var r recorder
	go func() { done <- d.Serve(ctx, devEnd, &r) }()
	c := devicelink.NewConn(hostEnd)
	handshake(t, c)
	c.SendProcessMessage(backupReq(false))
	testenv.WaitFor(t, 5*time.Second, "the passcode prompt", func() bool { names, _ := r.posted(); return len(names) > 0 })
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Serve = %v; want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if _, err := c.ReadMessage(); err == nil {
		t.Error("link still open after Serve returned")
	}
}

// A host that vanishes mid-upload makes Serve return an error; the device stays usable and
// the next backup (a full one: nothing was committed) succeeds.
func TestLinkDropMidUpload(t *testing.T) {
	d := newTestDevice(t, Options{Files: 200, TotalSize: 20 << 20})
	hostEnd, devEnd := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- d.Serve(context.Background(), devEnd, nil) }()
	c := devicelink.NewConn(hostEnd)
	handshake(t, c)
	c.SendProcessMessage(backupReq(false))
	h := newHost(t)
	for {
		m, err := c.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if m.Name() == devicelink.UploadFiles {
			break // vanish while the device streams the first batch
		}
		if err := h.handle(c, m); err != nil {
			t.Fatal(err)
		}
	}
	hostEnd.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Error("Serve = nil after the host vanished mid-upload; want an error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after the link dropped")
	}
	if c := d.Counters(); c.FailedBackups != 1 || c.Backups != 0 || c.LastErrorCode != -1 {
		t.Errorf("counters after drop %+v", c)
	}
	if res := h.session(t, d, nil, backupReq(false)); errorCode(t, res) != 0 || !d.Counters().LastFull {
		t.Errorf("backup after a drop: %v full=%v; want a full success", res, d.Counters().LastFull)
	}
	verifyFolder(t, d, h.root)
}

// Serve refuses a host that does not accept the DeviceLink version.
func TestVersionExchangeRefused(t *testing.T) {
	d := newTestDevice(t, Options{Files: 10})
	hostEnd, devEnd := net.Pipe()
	defer hostEnd.Close()
	done := make(chan error, 1)
	go func() { done <- d.Serve(context.Background(), devEnd, nil) }()
	c := devicelink.NewConn(hostEnd)
	c.ReadMessage()
	c.WriteMessage(devicelink.VersionExchange, "DLVersionsNope", uint64(300))
	if err := <-done; err == nil {
		t.Error("Serve accepted a refused version exchange")
	}
}
