package devicesim

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"snapback/internal/plistio"
	"snapback/internal/testenv"
)

// muxClient is a minimal usbmuxd client for tests that need byte-level control.
type muxClient struct {
	t   testing.TB
	c   net.Conn
	tag uint32
}

func dialMux(t testing.TB, sim *Sim) *muxClient {
	t.Helper()
	c, err := net.Dial("tcp", sim.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return &muxClient{t: t, c: c}
}

func (m *muxClient) request(v map[string]any) map[string]any {
	m.t.Helper()
	m.tag++
	b, err := encodeMuxPlist(m.tag, v)
	if err != nil {
		m.t.Fatal(err)
	}
	if _, err := m.c.Write(b); err != nil {
		m.t.Fatal(err)
	}
	h, payload, err := readMuxPacket(m.c)
	if err != nil {
		m.t.Fatal(err)
	}
	if h.Tag != m.tag || h.Version != muxVersionPlist {
		m.t.Fatalf("reply header %+v, want version 1 and tag %d", h, m.tag)
	}
	if !bytes.HasPrefix(payload, []byte("<?xml")) {
		m.t.Fatalf("reply is not XML: %q", payload[:min(len(payload), 20)])
	}
	var out map[string]any
	if err := plistio.Unmarshal(payload, &out); err != nil {
		m.t.Fatal(err)
	}
	return out
}

func resultNumber(t testing.TB, m map[string]any) int64 {
	t.Helper()
	n, ok := plistio.Int(m["Number"])
	if !ok || m["MessageType"] != "Result" {
		t.Fatalf("not a Result: %v", m)
	}
	return n
}

// connect issues Connect to a device port and returns the raw pipe.
func (m *muxClient) connect(deviceID int, port uint16) net.Conn {
	m.t.Helper()
	r := m.request(map[string]any{"MessageType": "Connect", "DeviceID": deviceID, "PortNumber": int(swap16(port))})
	if n := resultNumber(m.t, r); n != 0 {
		m.t.Fatalf("Connect %d:%d: Result %d", deviceID, port, n)
	}
	return m.c
}

// ldClient is a lockdown client over a raw pipe; it switches to TLS on StartSession.
type ldClient struct {
	t   testing.TB
	raw net.Conn
	rw  io.ReadWriter
	tls *tls.Conn
	rec PairRecord
	sid string
}

func dialLockdown(t testing.TB, sim *Sim, d *Device) *ldClient {
	t.Helper()
	usb, wifi := d.DeviceIDs()
	id := usb
	if id == 0 {
		id = wifi
	}
	c := dialMux(t, sim).connect(id, LockdownPort)
	return &ldClient{t: t, raw: c, rw: c, rec: d.PairRecord()}
}

func (l *ldClient) call(req map[string]any) map[string]any {
	l.t.Helper()
	if err := plistio.WritePlist(l.rw, req, plistio.XML); err != nil {
		l.t.Fatal(err)
	}
	var resp map[string]any
	if err := plistio.ReadPlist(l.rw, 1<<20, &resp); err != nil {
		l.t.Fatalf("%v: %v", req["Request"], err)
	}
	if resp["Request"] != req["Request"] {
		l.t.Fatalf("reply %v does not echo Request %v", resp, req["Request"])
	}
	if _, has := resp["Result"]; has && resp["Error"] != nil {
		l.t.Errorf("error reply carries Result: %v", resp)
	}
	return resp
}

// startSession starts a session and TLS, presenting cert (the record's root or host).
func (l *ldClient) startSession(certPEM, keyPEM []byte) {
	l.t.Helper()
	r := l.call(map[string]any{"Request": "StartSession", "Label": "test", "HostID": l.rec.HostID, "SystemBUID": l.rec.SystemBUID})
	if r["EnableSessionSSL"] != true || r["SessionID"] == nil {
		l.t.Fatalf("StartSession = %v", r)
	}
	l.sid = r["SessionID"].(string)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		l.t.Fatal(err)
	}
	tc := tls.Client(l.raw, &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{cert}})
	if err := tc.Handshake(); err != nil {
		l.t.Fatalf("session handshake: %v", err)
	}
	l.tls, l.rw = tc, tc
}

func TestLockdownWithoutSession(t *testing.T) {
	sim := startSim(t, Options{})
	d := addDevice(t, sim, DeviceConfig{})
	l := dialLockdown(t, sim, d)
	if r := l.call(map[string]any{"Request": "QueryType"}); r["Type"] != "com.apple.mobile.lockdown" {
		t.Errorf("QueryType = %v", r)
	}
	if r := l.call(map[string]any{"Request": "GetValue", "Key": "ProductVersion"}); r["Value"] != d.Identity().ProductVersion {
		t.Errorf("GetValue ProductVersion = %v", r)
	}
	// GetValue without a key answers the public subset (ideviceinfo -s), never private
	// values such as the phone number.
	r := l.call(map[string]any{"Request": "GetValue"})
	pub, _ := r["Value"].(map[string]any)
	if pub["UniqueDeviceID"] != d.UDID() || pub["ProductType"] != d.Identity().ProductType || pub["WiFiAddress"] != d.Identity().WiFiAddress {
		t.Errorf("GetValue without session and key = %v; want the public subset", r)
	}
	for _, private := range []string{"PhoneNumber", "InternationalMobileEquipmentIdentity", "IntegratedCircuitCardIdentity"} {
		if _, ok := pub[private]; ok {
			t.Errorf("GetValue without session reveals %s", private)
		}
	}
	for _, req := range []map[string]any{
		{"Request": "GetValue", "Key": "PhoneNumber"},
		{"Request": "StartService", "Service": "com.apple.afc"},
	} {
		if r := l.call(req); r["Error"] != "SessionInactive" {
			t.Errorf("%v without session = %v, want Error SessionInactive", req, r)
		}
	}
	if r := l.call(map[string]any{"Request": "StartSession", "HostID": "00000000-0000-0000-0000-000000000000"}); r["Error"] != "InvalidHostID" {
		t.Errorf("StartSession with a foreign HostID = %v, want InvalidHostID", r)
	}
}

// TestLockdownSessionLifecycle covers both client certificates, errors, StopSession with
// close_notify followed by plain text (libimobiledevice), and a service start.
func TestLockdownSessionLifecycle(t *testing.T) {
	sim := startSim(t, Options{})
	d := addDevice(t, sim, DeviceConfig{})
	rec := d.PairRecord()
	for _, tc := range []struct {
		name      string
		cert, key []byte
	}{
		{"root certificate (libimobiledevice/OpenSSL)", rec.RootCertificate, rec.RootPrivateKey},
		{"host certificate (go-ios)", rec.HostCertificate, rec.HostPrivateKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := dialLockdown(t, sim, d)
			l.startSession(tc.cert, tc.key)
			if r := l.call(map[string]any{"Request": "GetValue", "Key": "NoSuchKey"}); r["Error"] != "MissingValue" || r["Key"] != "NoSuchKey" {
				t.Errorf("missing key = %v, want Error MissingValue with Key echoed", r)
			}
			if r := l.call(map[string]any{"Request": "GetValue", "Domain": domainMITunes, "Key": "MinITunesVersion"}); r["Value"] == nil {
				t.Errorf("MinITunesVersion = %v", r)
			}
			if r := l.call(map[string]any{"Request": "GetValue", "Domain": domainITunes}); r["Value"] == nil {
				t.Errorf("com.apple.iTunes = %v, want an (empty) dict", r)
			} else if m, ok := r["Value"].(map[string]any); !ok || len(m) != 0 {
				t.Errorf("com.apple.iTunes value = %#v, want empty dict", r["Value"])
			}
			// installation_proxy is served now (the app list of Info.plist); a service the
			// simulator does not offer is still InvalidService.
			if r := l.call(map[string]any{"Request": "StartService", "Service": "com.apple.mobile.diagnostics_relay"}); r["Error"] != "InvalidService" {
				t.Errorf("diagnostics_relay = %v, want InvalidService", r)
			}
			if r := l.call(map[string]any{"Request": "StartService", "Service": "com.apple.mobilebackup2"}); r["Error"] == nil {
				t.Errorf("mobilebackup2 on a device without backup service = %v, want an error", r)
			}
			r := l.call(map[string]any{"Request": "StartService", "Service": "com.apple.afc"})
			if r["EnableServiceSSL"] != true || r["Port"] == nil {
				t.Errorf("StartService afc = %v", r)
			}
			l.call(map[string]any{"Request": "StopSession", "SessionID": l.sid})
			// libimobiledevice: SSL_shutdown (close_notify), then plain text again.
			if err := l.tls.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			l.rw = l.raw
			l.raw.SetDeadline(time.Now().Add(10 * time.Second))
			if r := l.call(map[string]any{"Request": "GetValue", "Key": "ProductType"}); r["Value"] != d.Identity().ProductType {
				t.Errorf("plain text after StopSession = %v", r)
			}
		})
	}
	if c := d.Counters(); c.Sessions != 2 {
		t.Errorf("Sessions = %d, want 2", c.Sessions)
	}
}

func TestLockdownRejectsForeignClientCert(t *testing.T) {
	sim := startSim(t, Options{})
	d := addDevice(t, sim, DeviceConfig{})
	other := addDevice(t, sim, DeviceConfig{})
	l := dialLockdown(t, sim, d)
	r := l.call(map[string]any{"Request": "StartSession", "HostID": l.rec.HostID})
	if r["EnableSessionSSL"] != true {
		t.Fatalf("StartSession = %v", r)
	}
	orec := other.PairRecord()
	cert, err := tls.X509KeyPair(orec.HostCertificate, orec.HostPrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(l.raw, &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{cert}})
	err = tc.Handshake()
	if err == nil {
		// TLS 1.2: the server's verdict arrives with the first read.
		err = plistio.WritePlist(tc, map[string]any{"Request": "QueryType"}, plistio.XML)
		if err == nil {
			_, err = plistio.ReadFrame(tc, 1<<20)
		}
	}
	if err == nil {
		t.Fatal("a certificate from another pairing was accepted")
	}
}

// backupPlumbing starts com.apple.mobilebackup2 with the escrow bag and returns the TLS
// service connection.
func startBackupService(t testing.TB, sim *Sim, d *Device, escrow []byte) (*tls.Conn, map[string]any) {
	t.Helper()
	l := dialLockdown(t, sim, d)
	rec := d.PairRecord()
	l.startSession(rec.RootCertificate, rec.RootPrivateKey)
	req := map[string]any{"Request": "StartService", "Service": "com.apple.mobilebackup2"}
	if escrow != nil {
		req["EscrowBag"] = escrow
	}
	r := l.call(req)
	if r["Error"] != nil {
		return nil, r
	}
	port, _ := plistio.Int(r["Port"])
	l.call(map[string]any{"Request": "StopSession", "SessionID": l.sid})
	usb, _ := d.DeviceIDs()
	c := dialMux(t, sim).connect(usb, uint16(port))
	cert, _ := tls.X509KeyPair(rec.HostCertificate, rec.HostPrivateKey)
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{cert}})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	return tc, r
}

func TestBackupServicePlumbing(t *testing.T) {
	sim := startSim(t, Options{})
	bs := &echoBackup{}
	d := addDevice(t, sim, DeviceConfig{Backup: bs})

	// An observer on notification_proxy sees the service's device-side posts.
	obs := dialNP(t, sim, d)
	obs.send(map[string]any{"Command": "ObserveNotification", "Name": NotifyPasscodePresented})
	obs.send(map[string]any{"Command": "ObserveNotification", "Name": NotifyPasscodeDismissed})
	waitFor(t, func() bool {
		return d.np.observers(NotifyPasscodePresented) == 1 && d.np.observers(NotifyPasscodeDismissed) == 1
	})

	if _, r := startBackupService(t, sim, d, nil); r["Error"] != "EscrowLocked" {
		t.Errorf("StartService without EscrowBag = %v, want EscrowLocked", r)
	}
	if _, r := startBackupService(t, sim, d, []byte("wrong")); r["Error"] != "EscrowLocked" {
		t.Errorf("StartService with a wrong EscrowBag = %v, want EscrowLocked", r)
	}
	tc, _ := startBackupService(t, sim, d, d.PairRecord().EscrowBag)
	msg := []any{"DLMessageVersionExchange", "DLVersionsOk", 400}
	if err := plistio.WritePlist(tc, msg, plistio.XML); err != nil {
		t.Fatal(err)
	}
	var echo []any
	if err := plistio.ReadPlist(tc, 1<<20, &echo); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(echo) != fmt.Sprint(msg) {
		t.Errorf("echo %v, want %v", echo, msg)
	}
	for _, want := range []string{NotifyPasscodePresented, NotifyPasscodeDismissed} {
		if got := obs.recv(); got["Command"] != "RelayNotification" || got["Name"] != want {
			t.Errorf("observer got %v, want RelayNotification %s", got, want)
		}
	}
	obs.send(map[string]any{"Command": "Shutdown"})
	if got := obs.recv(); got["Command"] != "ProxyDeath" {
		t.Errorf("Shutdown answered %v, want ProxyDeath", got)
	}
	if c := d.Counters(); c.Backup != 1 || c.Posted != 2 || c.Relayed != 2 {
		t.Errorf("counters %+v: want 1 backup connection, 2 posts, 2 relays", c)
	}

	// A second connection to the same started port is refused: one connection per port.
	l := dialLockdown(t, sim, d)
	rec := d.PairRecord()
	l.startSession(rec.HostCertificate, rec.HostPrivateKey)
	r := l.call(map[string]any{"Request": "StartService", "Service": "com.apple.mobilebackup2", "EscrowBag": rec.EscrowBag})
	port, _ := plistio.Int(r["Port"])
	usb, _ := d.DeviceIDs()
	dialMux(t, sim).connect(usb, uint16(port))
	m := dialMux(t, sim)
	if n := resultNumber(t, m.request(map[string]any{"MessageType": "Connect", "DeviceID": usb, "PortNumber": int(swap16(uint16(port)))})); n != muxConnRefused {
		t.Errorf("second Connect to a started port: Result %d, want %d", n, muxConnRefused)
	}
}

func TestBackupDropAfterBytes(t *testing.T) {
	sim := startSim(t, Options{})
	d := addDevice(t, sim, DeviceConfig{Backup: &floodBackup{}, DropBackupAfter: 100 << 10})
	tc, _ := startBackupService(t, sim, d, d.PairRecord().EscrowBag)
	tc.SetDeadline(time.Now().Add(20 * time.Second))
	n, err := io.Copy(io.Discard, tc)
	if err == nil && n >= 1<<20 {
		t.Fatalf("read %d bytes without the link dropping", n)
	}
	if n > 100<<10 || n < 50<<10 {
		t.Errorf("got %d bytes before the drop, want a little under 100 KiB", n)
	}
	waitFor(t, func() bool { return d.Counters().BackupDrops == 1 })
}

// floodBackup sends 1 MiB and returns.
type floodBackup struct{}

func (floodBackup) Serve(_ context.Context, rw io.ReadWriter, _ Notifier) error {
	buf := make([]byte, 32<<10)
	for range 32 {
		if _, err := rw.Write(buf); err != nil {
			return err
		}
	}
	return nil
}

// TestManyLockdownConnections mirrors idevicebackup2: several long-lived lockdown
// connections plus many short-lived ones, each posting a notification.
func TestManyLockdownConnections(t *testing.T) {
	sim := startSim(t, Options{})
	d := addDevice(t, sim, DeviceConfig{})
	rec := d.PairRecord()
	var held []*ldClient
	for range 6 {
		l := dialLockdown(t, sim, d)
		l.startSession(rec.RootCertificate, rec.RootPrivateKey)
		held = append(held, l)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 24 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if r := recover(); r != nil {
					errs <- fmt.Errorf("worker %d: %v", i, r)
				}
			}()
			np := dialNPFrom(t, sim, d)
			np.send(map[string]any{"Command": "PostNotification", "Name": "com.apple.itunes-mobdev.syncWillStart"})
			np.send(map[string]any{"Command": "Shutdown"})
			if got := np.recv(); got["Command"] != "ProxyDeath" {
				errs <- fmt.Errorf("worker %d: Shutdown answered %v", i, got)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, l := range held {
		if r := l.call(map[string]any{"Request": "GetValue", "Key": "DeviceName"}); r["Value"] != d.Identity().DeviceName {
			t.Errorf("held connection: %v", r)
		}
	}
	if c := d.Counters(); c.Lockdown != 30 || c.NotificationProxy != 24 || c.Posted != 24 {
		t.Errorf("counters %+v: want 30 lockdown, 24 notification_proxy, 24 posts", c)
	}
}

// npClient talks to notification_proxy over its TLS service connection.
type npClient struct {
	t  testing.TB
	rw io.ReadWriter
}

func dialNP(t testing.TB, sim *Sim, d *Device) *npClient { return dialNPFrom(t, sim, d) }

// dialNPFrom does the whole idevicebackup2 do_post_notification dance: lockdown
// handshake, session, StartService, StopSession, mux Connect, service TLS.
func dialNPFrom(t testing.TB, sim *Sim, d *Device) *npClient {
	l := dialLockdown(t, sim, d)
	rec := d.PairRecord()
	l.startSession(rec.RootCertificate, rec.RootPrivateKey)
	r := l.call(map[string]any{"Request": "StartService", "Service": "com.apple.mobile.notification_proxy"})
	port, ok := plistio.Int(r["Port"])
	if !ok {
		panic(fmt.Sprintf("StartService NP = %v", r))
	}
	l.call(map[string]any{"Request": "StopSession", "SessionID": l.sid})
	l.tls.Close()
	usb, _ := d.DeviceIDs()
	c := dialMux(t, sim).connect(usb, uint16(port))
	cert, _ := tls.X509KeyPair(rec.RootCertificate, rec.RootPrivateKey)
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{cert}})
	if err := tc.Handshake(); err != nil {
		panic(err)
	}
	return &npClient{t: t, rw: tc}
}

func (n *npClient) send(v map[string]any) {
	if err := plistio.WritePlist(n.rw, v, plistio.XML); err != nil {
		panic(err)
	}
}

func (n *npClient) recv() map[string]any {
	var m map[string]any
	if err := plistio.ReadPlist(n.rw, 1<<20, &m); err != nil {
		if errors.Is(err, io.EOF) {
			return map[string]any{"EOF": true}
		}
		panic(err)
	}
	return m
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, 5*time.Second, "the condition", cond)
}

// waitBackup blocks until its context ends, like a device waiting for the passcode.
type waitBackup struct{ ended chan error }

func (w waitBackup) Serve(ctx context.Context, _ io.ReadWriter, _ Notifier) error {
	<-ctx.Done()
	w.ended <- ctx.Err()
	return ctx.Err()
}

func TestDetachCancelsBackupService(t *testing.T) {
	sim := startSim(t, Options{})
	w := waitBackup{ended: make(chan error, 1)}
	d := addDevice(t, sim, DeviceConfig{Backup: w})
	tc, _ := startBackupService(t, sim, d, d.PairRecord().EscrowBag)
	waitFor(t, func() bool { return d.Counters().Backup == 1 })
	if err := sim.Detach(d.UDID()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-w.ended:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Serve ended with %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve still running after the device was detached")
	}
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := tc.Read(make([]byte, 1)); err == nil {
		t.Error("backup connection survived the detach")
	}
}

// TestCloseStopsEverything leaves every kind of connection open and checks that Close
// returns promptly and leaves no goroutine behind.
func TestCloseStopsEverything(t *testing.T) {
	before := runtime.NumGoroutine()
	sim, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	w := waitBackup{ended: make(chan error, 1)}
	d, err := sim.AddDevice(DeviceConfig{USB: true, WiFi: true, Backup: w})
	if err != nil {
		t.Fatal(err)
	}
	listen := dialMux(t, sim)
	resultNumber(t, listen.request(map[string]any{"MessageType": "Listen"}))
	idle := dialMux(t, sim) // a control socket that never sends anything
	_ = idle
	l := dialLockdown(t, sim, d)
	rec := d.PairRecord()
	l.startSession(rec.HostCertificate, rec.HostPrivateKey)
	l.call(map[string]any{"Request": "StartService", "Service": "com.apple.afc"}) // never connected
	np := dialNP(t, sim, d)
	np.send(map[string]any{"Command": "ObserveNotification", "Name": "x"})
	startBackupService(t, sim, d, rec.EscrowBag)
	waitFor(t, func() bool { return d.Counters().Backup == 1 })

	done := make(chan error, 1)
	go func() { done <- sim.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return within 5 s")
	}
	if err := <-w.ended; !errors.Is(err, context.Canceled) {
		t.Errorf("backup Serve ended with %v", err)
	}
	testenv.Eventually(5*time.Second, func() bool { return runtime.NumGoroutine() <= before })
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines after Close, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}
