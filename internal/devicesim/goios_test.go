package devicesim

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/danielpaulus/go-ios/ios"
	"github.com/danielpaulus/go-ios/ios/notificationproxy"

	"snapback/internal/plistio"
)

// startSim starts a simulator for one test and points USBMUXD_SOCKET_ADDRESS at it.
func startSim(t *testing.T, opts Options) *Sim {
	t.Helper()
	sim, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sim.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	t.Setenv("USBMUXD_SOCKET_ADDRESS", sim.Addr())
	return sim
}

func addDevice(t *testing.T, sim *Sim, cfg DeviceConfig) *Device {
	t.Helper()
	d, err := sim.AddDevice(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func findEntry(t *testing.T, udid, connType string) ios.DeviceEntry {
	t.Helper()
	list, err := ios.ListDevices()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range list.DeviceList {
		if e.Properties.SerialNumber == udid && e.Properties.ConnectionType == connType {
			return e
		}
	}
	t.Fatalf("no %s entry for %s in %+v", connType, udid, list.DeviceList)
	return ios.DeviceEntry{}
}

func TestGoIOSListDevicesUSBAndWiFi(t *testing.T) {
	sim := startSim(t, Options{})
	d := addDevice(t, sim, DeviceConfig{USB: true, WiFi: true})
	other := addDevice(t, sim, DeviceConfig{})
	list, err := ios.ListDevices()
	if err != nil {
		t.Fatal(err)
	}
	if len(list.DeviceList) != 3 {
		t.Fatalf("got %d entries, want 3 (USB+Wi-Fi of one device, USB of another): %+v", len(list.DeviceList), list.DeviceList)
	}
	usb := findEntry(t, d.UDID(), TransportUSB)
	wifi := findEntry(t, d.UDID(), TransportNetwork)
	if usb.DeviceID <= 0 || wifi.DeviceID <= 0 || usb.DeviceID == wifi.DeviceID {
		t.Errorf("DeviceIDs usb=%d wifi=%d: want distinct and > 0", usb.DeviceID, wifi.DeviceID)
	}
	findEntry(t, other.UDID(), TransportUSB)
}

func TestGoIOSListenAttachDetach(t *testing.T) {
	sim := startSim(t, Options{})
	d := addDevice(t, sim, DeviceConfig{Detached: true})
	recv, closeFn, err := ios.Listen()
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	type ev struct {
		msg ios.AttachedMessage
		err error
	}
	evs := make(chan ev, 8)
	go func() {
		for {
			m, err := recv()
			evs <- ev{m, err}
			if err != nil {
				return
			}
		}
	}()
	next := func() ios.AttachedMessage {
		t.Helper()
		select {
		case e := <-evs:
			if e.err != nil {
				t.Fatalf("listen: %v", e.err)
			}
			return e.msg
		case <-time.After(5 * time.Second):
			t.Fatal("no usbmuxd event within 5 s")
		}
		return ios.AttachedMessage{}
	}
	if err := sim.Attach(d.UDID()); err != nil {
		t.Fatal(err)
	}
	m := next()
	if !m.DeviceAttached() || m.Properties.SerialNumber != d.UDID() || m.Properties.ConnectionType != TransportUSB {
		t.Fatalf("got %+v, want Attached USB %s", m, d.UDID())
	}
	attachedID := m.DeviceID
	if err := sim.SetTransports(d.UDID(), true, true); err != nil {
		t.Fatal(err)
	}
	if m = next(); !m.DeviceAttached() || m.Properties.ConnectionType != TransportNetwork {
		t.Fatalf("got %+v, want Attached Network", m)
	}
	if err := sim.Detach(d.UDID()); err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for range 2 {
		m = next()
		if !m.DeviceDetached() {
			t.Fatalf("got %+v, want Detached", m)
		}
		seen[m.DeviceID] = true
	}
	if !seen[attachedID] {
		t.Errorf("Detached IDs %v lack the USB DeviceID %d", seen, attachedID)
	}
	list, err := ios.ListDevices()
	if err != nil {
		t.Fatal(err)
	}
	if len(list.DeviceList) != 0 {
		t.Errorf("after Detach ListDevices has %d entries, want 0", len(list.DeviceList))
	}
}

func TestGoIOSLockdownSessionAndValues(t *testing.T) {
	sim := startSim(t, Options{})
	d := addDevice(t, sim, DeviceConfig{Identity: Identity{DeviceName: "Ada's iPhone", ProductVersion: "18.1"}, WiFi: true, USB: true})
	for _, ct := range []string{TransportUSB, TransportNetwork} {
		e := findEntry(t, d.UDID(), ct)
		conn, err := ios.ConnectLockdownWithSession(e)
		if err != nil {
			t.Fatalf("%s: %v", ct, err)
		}
		vals, err := conn.GetValues()
		if err != nil {
			t.Fatal(err)
		}
		v := vals.Value
		want := d.Identity()
		if v.UniqueDeviceID != want.UDID || v.DeviceName != "Ada's iPhone" || v.ProductVersion != "18.1" ||
			v.ProductType != want.ProductType || v.SerialNumber != want.SerialNumber || v.WiFiAddress != want.WiFiAddress ||
			v.InternationalMobileEquipmentIdentity != want.IMEI || v.DeviceClass != "iPhone" {
			t.Errorf("%s: GetValues = %+v, want identity %+v", ct, v, want)
		}
		enc, err := conn.GetValueForDomain("WillEncrypt", domainBackup)
		if err != nil || enc != false {
			t.Errorf("WillEncrypt = %v, %v; want false", enc, err)
		}
		if err := conn.SetValueForDomain("EnableWifiConnections", domainWireless, false); err != nil {
			t.Fatal(err)
		}
		if d.WifiConnectionsEnabled() {
			t.Error("SetValue EnableWifiConnections=false did not stick")
		}
		conn.Close()
	}
	if c := d.Counters(); c.Sessions != 2 || c.Lockdown != 2 {
		t.Errorf("counters %+v: want 2 lockdown connections with 2 sessions", c)
	}
}

func TestGoIOSNotificationProxyAndAFC(t *testing.T) {
	sim := startSim(t, Options{})
	d := addDevice(t, sim, DeviceConfig{USB: true, WiFi: true})
	e := findEntry(t, d.UDID(), TransportUSB)

	np, err := notificationproxy.New(e)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() { got <- np.Observe(NotifyPasscodePresented, 5*time.Second) }()
	// Observe registers asynchronously; post until the relay arrives.
	deadline := time.After(5 * time.Second)
	for done := false; !done; {
		d.Post(NotifyPasscodePresented)
		select {
		case err := <-got:
			if err != nil {
				t.Fatalf("observe: %v", err)
			}
			done = true
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatal("device-side post never reached the go-ios observer")
		}
	}
	np.Close()

	// go-ios's afc package needs golang.org/x/exp, which the module does not pin; its
	// core ConnectToService (StartService + Connect + TLS) is what matters here, and the
	// AFC packets are spoken by afcCall.
	conn, err := ios.ConnectToService(e, "com.apple.afc")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ac := &afcClient{t: t, rw: conn}
	if code := ac.status(afcOpGetFileInfo, cstr("/com.apple.itunes.lock_sync"), nil); code != afcObjectNotFound {
		t.Errorf("GET_FILE_INFO of an absent file: status %d, want %d", code, afcObjectNotFound)
	}
	h := ac.open(3, "/iTunes_Control/iTunes/test.txt")
	if code := ac.status(afcOpFileWrite, u64(h), []byte("hello afc")); code != 0 {
		t.Fatalf("write status %d", code)
	}
	if code := ac.status(afcOpFileClose, u64(h), nil); code != 0 {
		t.Fatalf("close status %d", code)
	}
	op, _, data := ac.call(afcOpGetFileInfo, cstr("/iTunes_Control/iTunes/test.txt"), nil)
	if op != afcOpData || !bytes.Contains(data, []byte("st_size\x009\x00")) || !bytes.Contains(data, []byte("S_IFREG")) {
		t.Fatalf("GET_FILE_INFO = op %d %q", op, data)
	}
	h = ac.open(1, "/iTunes_Control/iTunes/test.txt")
	if op, _, data := ac.call(afcOpFileRead, append(u64(h), u64(100)...), nil); op != afcOpData || string(data) != "hello afc" {
		t.Fatalf("read back op %d %q", op, data)
	}
	if got, _ := d.AFCFile("/iTunes_Control/iTunes/test.txt"); !bytes.Equal(got, []byte("hello afc")) {
		t.Errorf("device sees %q", got)
	}
	// The same service over the Wi-Fi entry, still through usbmuxd Connect.
	wconn, err := ios.ConnectToService(findEntry(t, d.UDID(), TransportNetwork), "com.apple.afc")
	if err != nil {
		t.Fatal(err)
	}
	defer wconn.Close()
	wc := &afcClient{t: t, rw: wconn}
	if code := wc.status(afcOpMakeDir, cstr("/Downloads/x"), nil); code != 0 {
		t.Errorf("MAKE_DIR over Wi-Fi: %d", code)
	}
	if c := d.Counters(); c.AFC != 2 || c.NotificationProxy != 1 || c.DirectConnects != 0 {
		t.Errorf("counters %+v: want 2 AFC and 1 notification_proxy connection, none direct", c)
	}
}

// echoBackup is a stand-in BackupService: it posts the passcode notifications and echoes
// one DeviceLink-style frame.
type echoBackup struct {
	mu     sync.Mutex
	served int
	err    error
}

func (b *echoBackup) Serve(ctx context.Context, rw io.ReadWriter, n Notifier) error {
	n.Post(NotifyPasscodePresented)
	var msg []any
	err := plistio.ReadPlist(rw, 1<<20, &msg)
	if err == nil {
		err = plistio.WritePlist(rw, msg, plistio.Binary)
	}
	n.Post(NotifyPasscodeDismissed)
	b.mu.Lock()
	b.served++
	b.err = err
	b.mu.Unlock()
	return err
}

func (b *echoBackup) WillEncrypt() bool { return true }

// afcClient speaks raw AFC for tests, checking that every reply echoes the packet number.
type afcClient struct {
	t   testing.TB
	rw  io.ReadWriter
	num uint64
}

func (c *afcClient) call(op uint64, hp, data []byte) (uint64, []byte, []byte) {
	c.t.Helper()
	c.num++
	if _, err := c.rw.Write(encodeAFC(c.num, op, hp, data)); err != nil {
		c.t.Fatalf("afc write: %v", err)
	}
	hb := make([]byte, afcHeaderSize)
	if _, err := io.ReadFull(c.rw, hb); err != nil {
		c.t.Fatalf("afc read: %v", err)
	}
	h, err := parseAFCHeader(hb)
	if err != nil {
		c.t.Fatal(err)
	}
	if h.PacketNum != c.num {
		c.t.Fatalf("reply packet_num %d, want %d", h.PacketNum, c.num)
	}
	rhp := make([]byte, h.ThisLen-afcHeaderSize)
	rdata := make([]byte, h.EntireLen-h.ThisLen)
	if _, err := io.ReadFull(c.rw, rhp); err != nil {
		c.t.Fatal(err)
	}
	if _, err := io.ReadFull(c.rw, rdata); err != nil {
		c.t.Fatal(err)
	}
	return h.Op, rhp, rdata
}

// status performs a call that must answer with a STATUS packet carrying 8 bytes.
func (c *afcClient) status(op uint64, hp, data []byte) uint64 {
	c.t.Helper()
	rop, rhp, _ := c.call(op, hp, data)
	if rop != afcOpStatus || len(rhp) != 8 {
		c.t.Fatalf("op %#x: reply op %#x with %d-byte header payload, want STATUS with 8", op, rop, len(rhp))
	}
	return binary.LittleEndian.Uint64(rhp)
}

func (c *afcClient) open(mode uint64, p string) uint64 {
	c.t.Helper()
	op, hp, _ := c.call(afcOpFileOpen, append(u64(mode), cstr(p)...), nil)
	if op != afcOpFileOpenRes || len(hp) != 8 {
		c.t.Fatalf("open %s: reply op %#x %x", p, op, hp)
	}
	h := binary.LittleEndian.Uint64(hp)
	if h == 0 {
		c.t.Fatalf("open %s: handle 0", p)
	}
	return h
}

func u64(v uint64) []byte  { return binary.LittleEndian.AppendUint64(nil, v) }
func cstr(s string) []byte { return append([]byte(s), 0) }
