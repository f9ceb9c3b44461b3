package devicesim

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"snapback/internal/plistio"
)

func TestParseMuxHeader(t *testing.T) {
	// Appendix B: Connect header for a 300-byte payload, tag 5.
	b := []byte{0x3c, 0x01, 0, 0, 1, 0, 0, 0, 8, 0, 0, 0, 5, 0, 0, 0}
	h, err := parseMuxHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	if h != (muxHeader{Length: 316, Version: 1, Message: 8, Tag: 5}) {
		t.Errorf("got %+v", h)
	}
	if !bytes.Equal(h.encode(), b) {
		t.Errorf("encode = %x, want %x", h.encode(), b)
	}
	for _, bad := range []muxHeader{
		{Length: 15, Version: 1},                     // shorter than the header
		{Length: muxHeaderSize + muxMaxPayload + 1},  // too large to allocate
		{Length: 0xFFFFFFFF, Version: 1, Message: 8}, // hostile
	} {
		if _, err := parseMuxHeader(bad.encode()); !errors.Is(err, errMuxHeader) {
			t.Errorf("header %+v: err %v, want errMuxHeader", bad, err)
		}
	}
	if _, err := parseMuxHeader(b[:10]); err == nil {
		t.Error("short header accepted")
	}
}

func TestDecodeMuxRequest(t *testing.T) {
	xml, _ := plistio.Marshal(map[string]any{"MessageType": "Connect", "DeviceID": 3, "PortNumber": 32498, "ProgName": "x"}, plistio.XML)
	r, err := decodeMuxRequest(xml)
	if err != nil {
		t.Fatal(err)
	}
	if r.MessageType != "Connect" || r.DeviceID != 3 || r.Port != LockdownPort || !r.HasPort {
		t.Errorf("got %+v, want Connect to device 3 port 62078", r)
	}
	bin, _ := plistio.Marshal(map[string]any{"MessageType": "SavePairRecord", "PairRecordID": "abc", "PairRecordData": []byte{1, 2}}, plistio.Binary)
	r, err = decodeMuxRequest(bin)
	if err != nil {
		t.Fatal(err)
	}
	if r.PairRecordID != "abc" || !bytes.Equal(r.PairRecordData, []byte{1, 2}) {
		t.Errorf("binary request decoded as %+v", r)
	}
	for name, m := range map[string]map[string]any{
		"no MessageType":  {"DeviceID": 1},
		"port too big":    {"MessageType": "Connect", "PortNumber": 70000},
		"port negative":   {"MessageType": "Connect", "PortNumber": -1},
		"string DeviceID": {"MessageType": "Connect", "DeviceID": "1"},
		"data as string":  {"MessageType": "SavePairRecord", "PairRecordData": "x"},
	} {
		b, _ := plistio.Marshal(m, plistio.XML)
		if _, err := decodeMuxRequest(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := decodeMuxRequest(nil); err == nil {
		t.Error("empty payload accepted")
	}
}

func TestValidRecordID(t *testing.T) {
	for id, want := range map[string]bool{
		"00008110-00005A0000000000":                true,
		"f0e1d2c3b4a5968778695a4b3c2d1e0f12345678": true,
		"":                      false,
		"../etc/passwd":         false,
		"/abs":                  false,
		"a/b":                   false,
		"a\x00b":                false,
		"..":                    false,
		strings.Repeat("a", 65): false,
	} {
		if got := validRecordID(id); got != want {
			t.Errorf("validRecordID(%q) = %v, want %v", id, got, want)
		}
	}
}

func TestDecodeLockdownRequest(t *testing.T) {
	for _, f := range []plistio.Format{plistio.XML, plistio.Binary} {
		b, _ := plistio.Marshal(map[string]any{"Request": "GetValue", "Key": "ProductVersion", "Label": "x"}, f)
		name, m, err := decodeLockdownRequest(b)
		if err != nil || name != "GetValue" || m["Key"] != "ProductVersion" {
			t.Errorf("format %d: %q %v %v", f, name, m, err)
		}
	}
	for _, bad := range [][]byte{nil, []byte("garbage"), []byte(`<?xml version="1.0"?><plist><dict><key>Label</key><string>x</string></dict></plist>`)} {
		if _, _, err := decodeLockdownRequest(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestUsbmuxdProtocol checks the control protocol at the byte level: tags echoed, XML
// replies, several commands on one socket, result codes, pair store sanitising.
func TestUsbmuxdProtocol(t *testing.T) {
	sim := startSim(t, Options{})
	d := addDevice(t, sim, DeviceConfig{})
	m := dialMux(t, sim)
	if r := m.request(map[string]any{"MessageType": "ReadBUID"}); r["BUID"] != sim.SystemBUID() {
		t.Errorf("ReadBUID = %v", r)
	}
	r := m.request(map[string]any{"MessageType": "ReadPairRecord", "PairRecordID": d.UDID()})
	data, ok := r["PairRecordData"].([]byte)
	if !ok {
		t.Fatalf("ReadPairRecord = %v", r)
	}
	var rec PairRecord
	if err := plistio.Unmarshal(data, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.HostID != d.PairRecord().HostID || rec.SystemBUID != sim.SystemBUID() || len(rec.EscrowBag) == 0 || rec.WiFiMACAddress != d.Identity().WiFiAddress {
		t.Errorf("pair record %+v does not match the device", rec)
	}
	if !bytes.Contains(data, []byte("<key>RootCertificate</key>\n\t<data>")) && !bytes.Contains(data, []byte("<key>RootCertificate</key><data>")) {
		t.Errorf("RootCertificate is not plist data:\n%s", data)
	}
	for name, tc := range map[string]struct {
		req  map[string]any
		want int64
	}{
		"unknown command":     {map[string]any{"MessageType": "Frobnicate"}, muxBadCommand},
		"read traversal":      {map[string]any{"MessageType": "ReadPairRecord", "PairRecordID": "../../etc/passwd"}, muxEINVAL},
		"read missing id":     {map[string]any{"MessageType": "ReadPairRecord"}, muxEINVAL},
		"read unknown":        {map[string]any{"MessageType": "ReadPairRecord", "PairRecordID": "nosuchdevice"}, muxENOENT},
		"save traversal":      {map[string]any{"MessageType": "SavePairRecord", "PairRecordID": "../x", "PairRecordData": data}, muxEINVAL},
		"save without data":   {map[string]any{"MessageType": "SavePairRecord", "PairRecordID": "x"}, muxEINVAL},
		"delete unknown":      {map[string]any{"MessageType": "DeletePairRecord", "PairRecordID": "nosuchdevice"}, muxENOENT},
		"connect bad device":  {map[string]any{"MessageType": "Connect", "DeviceID": 999, "PortNumber": 32498}, muxBadDevice},
		"connect closed port": {map[string]any{"MessageType": "Connect", "DeviceID": 1, "PortNumber": int(swap16(1234))}, muxConnRefused},
	} {
		if n := resultNumber(t, m.request(tc.req)); n != tc.want {
			t.Errorf("%s: Result %d, want %d", name, n, tc.want)
		}
	}
	// Save, read back, delete, read again: in this order.
	if n := resultNumber(t, m.request(map[string]any{"MessageType": "SavePairRecord", "PairRecordID": "SOMEHOST-1", "PairRecordData": data, "DeviceID": 1})); n != 0 {
		t.Errorf("save: Result %d", n)
	}
	if r := m.request(map[string]any{"MessageType": "ReadPairRecord", "PairRecordID": "SOMEHOST-1"}); !bytes.Equal(r["PairRecordData"].([]byte), data) {
		t.Errorf("saved record reads back as %v", r)
	}
	if n := resultNumber(t, m.request(map[string]any{"MessageType": "DeletePairRecord", "PairRecordID": "SOMEHOST-1"})); n != 0 {
		t.Errorf("delete: Result %d", n)
	}
	if n := resultNumber(t, m.request(map[string]any{"MessageType": "ReadPairRecord", "PairRecordID": "SOMEHOST-1"})); n != muxENOENT {
		t.Errorf("read after delete: Result %d, want %d", n, muxENOENT)
	}
	// The socket still works after all of that, and finally becomes a lockdown pipe.
	c := m.connect(1, LockdownPort)
	if err := plistio.WritePlist(c, map[string]any{"Request": "QueryType"}, plistio.XML); err != nil {
		t.Fatal(err)
	}
	var q map[string]any
	if err := plistio.ReadPlist(c, 1<<16, &q); err != nil || q["Type"] != "com.apple.mobile.lockdown" {
		t.Errorf("QueryType over the pipe: %v %v", q, err)
	}
}

func TestUsbmuxdBinaryProtocolAndGarbage(t *testing.T) {
	sim := startSim(t, Options{})
	// Version 0 (binary) is answered with BADVERSION in binary.
	c, err := net.Dial("tcp", sim.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write(muxHeader{Length: 16, Version: 0, Message: 3, Tag: 9}.encode())
	h, payload, err := readMuxPacket(c)
	if err != nil {
		t.Fatal(err)
	}
	if h.Version != 0 || h.Message != muxMsgResult || h.Tag != 9 || binary.LittleEndian.Uint32(payload) != muxBadVersion {
		t.Errorf("binary reply %+v %x", h, payload)
	}
	// A hostile length closes the connection without allocating it.
	c2, err := net.Dial("tcp", sim.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.SetDeadline(time.Now().Add(5 * time.Second))
	c2.Write(muxHeader{Length: 0xFFFFFFF0, Version: 1, Message: 8, Tag: 1}.encode())
	if _, err := c2.Read(make([]byte, 1)); err == nil {
		t.Error("connection stayed open after a 4 GiB length")
	}
}

func TestListenSeesLiveEvents(t *testing.T) {
	sim := startSim(t, Options{})
	d := addDevice(t, sim, DeviceConfig{})
	m := dialMux(t, sim)
	if n := resultNumber(t, m.request(map[string]any{"MessageType": "Listen"})); n != 0 {
		t.Fatalf("Listen: %d", n)
	}
	next := func() map[string]any {
		h, p, err := readMuxPacket(m.c)
		if err != nil {
			t.Fatal(err)
		}
		if h.Tag != 0 {
			t.Errorf("event tag %d, want 0", h.Tag)
		}
		var ev map[string]any
		if err := plistio.Unmarshal(p, &ev); err != nil {
			t.Fatal(err)
		}
		return ev
	}
	if ev := next(); ev["MessageType"] != "Attached" {
		t.Fatalf("initial event %v", ev)
	}
	// A lockdown connection is cut when its device goes away.
	l := dialLockdown(t, sim, d)
	sim.Detach(d.UDID())
	if ev := next(); ev["MessageType"] != "Detached" {
		t.Fatalf("got %v, want Detached", ev)
	}
	l.raw.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := l.raw.Read(make([]byte, 1)); err == nil {
		t.Error("lockdown connection survived the detach")
	}
	sim.Attach(d.UDID())
	ev := next()
	props, _ := ev["Properties"].(map[string]any)
	if ev["MessageType"] != "Attached" || props["SerialNumber"] != d.UDID() {
		t.Fatalf("got %v, want Attached", ev)
	}
	id, _ := plistio.Int(ev["DeviceID"])
	if id <= 1 {
		t.Errorf("re-attached DeviceID %d, want a new one", id)
	}
	// A host that saves a pair record for a connected device makes usbmuxd announce Paired.
	rec, _ := d.PairRecord().Marshal()
	if n := resultNumber(t, dialMux(t, sim).request(map[string]any{"MessageType": "SavePairRecord", "PairRecordID": d.UDID(), "PairRecordData": rec, "DeviceID": id})); n != 0 {
		t.Fatalf("SavePairRecord: %d", n)
	}
	if ev := next(); ev["MessageType"] != "Paired" {
		t.Errorf("got %v, want Paired", ev)
	} else if pid, _ := plistio.Int(ev["DeviceID"]); pid != id {
		t.Errorf("Paired DeviceID %d, want %d", pid, id)
	}
}

func TestStateDirKeepsPairing(t *testing.T) {
	dir := t.TempDir()
	sim, err := Start(Options{StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	d, err := sim.AddDevice(DeviceConfig{})
	if err != nil {
		t.Fatal(err)
	}
	rec1, buid1 := d.PairRecord(), sim.SystemBUID()
	sim.Close()
	fi, err := os.Stat(filepath.Join(dir, "devices", d.UDID(), "pairing.plist"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("pairing file: %v %v, want mode 0600", fi, err)
	}
	sim2 := startSim(t, Options{StateDir: dir})
	d2 := addDevice(t, sim2, DeviceConfig{})
	rec2 := d2.PairRecord()
	if sim2.SystemBUID() != buid1 || rec2.HostID != rec1.HostID || !bytes.Equal(rec2.RootCertificate, rec1.RootCertificate) || !bytes.Equal(rec2.EscrowBag, rec1.EscrowBag) {
		t.Error("restart changed the pairing")
	}
	// The restarted device still accepts a session from the old record.
	l := dialLockdown(t, sim2, d2)
	l.rec = rec1
	l.startSession(rec1.RootCertificate, rec1.RootPrivateKey)
}

func TestUnixSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "usbmuxd.sock")
	sim := startSim(t, Options{UnixPath: path})
	addDevice(t, sim, DeviceConfig{})
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m := &muxClient{t: t, c: c}
	r := m.request(map[string]any{"MessageType": "ListDevices"})
	if list, _ := r["DeviceList"].([]any); len(list) != 1 {
		t.Errorf("ListDevices over unix socket = %v", r)
	}
}

func TestStartRefusesNonLoopback(t *testing.T) {
	if _, err := Start(Options{TCPAddr: "0.0.0.0:0"}); err == nil {
		t.Fatal("listening on all interfaces was allowed")
	}
}

// TestAFCLockAcrossConnections is the sync-lock dance: EX|NB held by one connection
// makes another's fail with 19 until it unlocks, closes or disconnects.
func TestAFCLockAcrossConnections(t *testing.T) {
	fs := newAFCFS("iPhone14,5")
	a, b := serveAFCPipe(t, fs), serveAFCPipe(t, fs)
	const lockPath = "/com.apple.itunes.lock_sync"
	ha, hb := a.open(2, lockPath), b.open(2, lockPath)
	if ha == hb {
		t.Errorf("two opens got the same handle %d", ha)
	}
	exNB := uint64(afcLockEX | afcLockNB)
	if code := a.status(afcOpFileLock, append(u64(ha), u64(exNB)...), nil); code != 0 {
		t.Fatalf("first lock: %d", code)
	}
	if code := b.status(afcOpFileLock, append(u64(hb), u64(exNB)...), nil); code != afcOpWouldBlock {
		t.Fatalf("second lock: %d, want %d", code, afcOpWouldBlock)
	}
	a.status(afcOpFileLock, append(u64(ha), u64(afcLockUN|afcLockNB)...), nil)
	if code := b.status(afcOpFileLock, append(u64(hb), u64(exNB)...), nil); code != 0 {
		t.Fatalf("lock after unlock: %d", code)
	}
	b.status(afcOpFileClose, u64(hb), nil)
	if fs.locked(lockPath) {
		t.Error("close did not release the lock")
	}
	a.status(afcOpFileLock, append(u64(ha), u64(exNB)...), nil)
	a.closeConn()
	waitFor(t, func() bool { return !fs.locked(lockPath) })

	c := serveAFCPipe(t, fs)
	if code := c.status(afcOpFileOpen, append(u64(1), cstr("/no/such/dir/file")...), nil); code != afcObjectNotFound {
		t.Errorf("open in a missing dir: %d", code)
	}
	if code := c.status(afcOpMakeDir, cstr("/iTunesRestore"), nil); code != 0 {
		t.Errorf("mkdir: %d", code)
	}
	h := c.open(4, "/iTunesRestore/RestoreApplications.plist")
	c.status(afcOpFileWrite, u64(h), []byte("apps"))
	c.status(afcOpFileClose, u64(h), nil)
	if code := c.status(afcOpRemovePath, cstr("/iTunesRestore"), nil); code != afcDirNotEmpty {
		t.Errorf("remove non-empty dir: %d, want %d", code, afcDirNotEmpty)
	}
	if code := c.status(afcOpRemovePath, cstr("/iTunesRestore/RestoreApplications.plist"), nil); code != 0 {
		t.Errorf("remove file: %d", code)
	}
	if code := c.status(afcOpRemovePath, cstr("/iTunesRestore"), nil); code != 0 {
		t.Errorf("remove empty dir: %d", code)
	}
	if code := c.status(afcOpGetFileInfo, cstr("/iTunesRestore"), nil); code != afcObjectNotFound {
		t.Errorf("stat removed dir: %d", code)
	}
	if code := c.status(0x99, nil, nil); code != afcOpNotSupported {
		t.Errorf("unknown op: %d", code)
	}
}

type afcPipe struct {
	*afcClient
	conn net.Conn
	done chan struct{}
}

func (p *afcPipe) closeConn() { p.conn.Close(); <-p.done }

func serveAFCPipe(t *testing.T, fs *afcFS) *afcPipe {
	client, server := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer server.Close()
		fs.serve(context.Background(), server)
	}()
	t.Cleanup(func() { client.Close(); <-done })
	return &afcPipe{afcClient: &afcClient{t: t, rw: client}, conn: client, done: done}
}

// testDevice is a Device without a running simulator, for fuzzing its handlers.
var testDevice = sync.OnceValue(func() *Device {
	p, err := newPairing("BUID", "aa:bb:cc:dd:ee:ff")
	if err != nil {
		panic(err)
	}
	s := &Sim{}
	d, err := newDevice(s, DeviceConfig{}.withDefaults(0), p)
	if err != nil {
		panic(err)
	}
	return d
})

func FuzzUsbmuxHeader(f *testing.F) {
	f.Add([]byte{0x3c, 0x01, 0, 0, 1, 0, 0, 0, 8, 0, 0, 0, 5, 0, 0, 0})
	f.Add(muxHeader{Length: 16}.encode())
	f.Add(muxHeader{Length: 0xFFFFFFFF, Version: 1, Message: 8}.encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseMuxHeader(b)
		if err != nil {
			return
		}
		if h.Length < muxHeaderSize || h.Length-muxHeaderSize > muxMaxPayload {
			t.Fatalf("accepted length %d", h.Length)
		}
		if !bytes.Equal(h.encode(), b[:muxHeaderSize]) {
			t.Fatalf("round trip %x != %x", h.encode(), b[:muxHeaderSize])
		}
		// The reader must never ask for more than the header announced.
		_, payload, err := readMuxPacket(bytes.NewReader(b))
		if err == nil && uint32(len(payload)) != h.Length-muxHeaderSize {
			t.Fatalf("payload %d bytes, header says %d", len(payload), h.Length-muxHeaderSize)
		}
	})
}

func FuzzUsbmuxMessage(f *testing.F) {
	for _, m := range []map[string]any{
		{"MessageType": "ListDevices", "ProgName": "idevicebackup2", "kLibUSBMuxVersion": 3},
		{"MessageType": "Connect", "DeviceID": 1, "PortNumber": 32498},
		{"MessageType": "ReadPairRecord", "PairRecordID": "00008110-00005A0000000000"},
		{"MessageType": "SavePairRecord", "PairRecordID": "../../x", "PairRecordData": []byte("<plist/>"), "DeviceID": 2},
	} {
		x, _ := plistio.Marshal(m, plistio.XML)
		b, _ := plistio.Marshal(m, plistio.Binary)
		f.Add(x)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		r, err := decodeMuxRequest(payload)
		if err != nil {
			return
		}
		if r.MessageType == "" && !bytes.Contains(payload, []byte("MessageType")) {
			t.Fatalf("decoded %+v from a payload without MessageType", r)
		}
		if r.HasRecordID && validRecordID(r.PairRecordID) && strings.ContainsAny(r.PairRecordID, "/\\.\x00") {
			t.Fatalf("unsafe PairRecordID %q passed validation", r.PairRecordID)
		}
	})
}

func FuzzLockdownRequest(f *testing.F) {
	for _, m := range []map[string]any{
		{"Request": "QueryType", "Label": "idevicebackup2"},
		{"Request": "GetValue", "Key": "ProductVersion"},
		{"Request": "GetValue", "Domain": "com.apple.mobile.battery"},
		{"Request": "StartSession", "HostID": "X", "SystemBUID": "Y"},
		{"Request": "StartService", "Service": "com.apple.mobilebackup2", "EscrowBag": []byte{1}},
		{"Request": "SetValue", "Domain": "com.apple.mobile.wireless_lockdown", "Key": "EnableWifiConnections", "Value": true},
	} {
		x, _ := plistio.Marshal(m, plistio.XML)
		f.Add(x, false)
		f.Add(x, true)
	}
	f.Fuzz(func(t *testing.T, frame []byte, inSession bool) {
		name, req, err := decodeLockdownRequest(frame)
		if err != nil {
			return
		}
		lc := &lockdownConn{d: testDevice()}
		if inSession {
			lc.session = "S"
		}
		resp := lc.handle(name, req)
		if resp["Request"] != name {
			t.Fatalf("reply %v does not echo %q", resp, name)
		}
		if _, err := plistio.Marshal(resp, plistio.XML); err != nil {
			t.Fatalf("reply cannot be encoded: %v", err)
		}
		if !inSession && resp["Error"] == nil {
			switch name {
			case "QueryType", "GetValue", "StartSession", "Goodbye":
			default:
				t.Fatalf("%s succeeded without a session: %v", name, resp)
			}
		}
	})
}

func FuzzAFCPacket(f *testing.F) {
	f.Add(encodeAFC(1, afcOpFileOpen, append(u64(2), cstr("/com.apple.itunes.lock_sync")...), nil))
	f.Add(encodeAFC(7, afcOpFileLock, append(u64(1), u64(6)...), nil))
	f.Add(encodeAFC(2, afcOpFileWrite, u64(1), []byte("data")))
	f.Add(encodeAFC(3, afcOpGetFileInfo, cstr("/"), nil))
	f.Add(encodeAFC(4, afcOpReadDir, cstr("/iTunes_Control"), nil))
	f.Fuzz(func(t *testing.T, stream []byte) {
		fs := newAFCFS("iPhone14,5")
		s := &afcSession{fs: fs, handles: map[uint64]*afcHandle{}}
		// Pre-open a handle so that handle-based ops get past the lookup.
		s.open(2, "/f")
		r := bytes.NewReader(stream)
		for range 8 {
			hb := make([]byte, afcHeaderSize)
			if _, err := io.ReadFull(r, hb); err != nil {
				return
			}
			h, err := parseAFCHeader(hb)
			if err != nil {
				return
			}
			hp := make([]byte, h.ThisLen-afcHeaderSize)
			data := make([]byte, h.EntireLen-h.ThisLen)
			if _, err := io.ReadFull(r, hp); err != nil {
				return
			}
			if _, err := io.ReadFull(r, data); err != nil {
				return
			}
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // a blocking lock must not hang the fuzzer
			op, rhp, _ := s.handle(ctx, h.Op, hp, data)
			if op == afcOpStatus && len(rhp) != 8 {
				t.Fatalf("status reply with %d bytes", len(rhp))
			}
			if fs.size < 0 || fs.size > afcMaxFSBytes {
				t.Fatalf("filesystem size %d out of bounds", fs.size)
			}
		}
		s.closeAll()
		if len(fs.locks) != 0 {
			t.Fatalf("locks left after closing every handle: %v", fs.locks)
		}
	})
}
