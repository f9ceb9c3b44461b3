package devicesim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"snapback/internal/atomicfile"
	"snapback/internal/lockdown"
	"snapback/internal/plistio"
)

// Options configures a simulator. The zero value serves TCP on a random loopback port,
// keeps everything in memory and logs nothing.
type Options struct {
	// TCPAddr is the loopback address of the fake usbmuxd, e.g. "127.0.0.1:27015".
	// Default "127.0.0.1:0" (a free port). Non-loopback addresses are refused: the
	// socket hands out pair records with private keys.
	TCPAddr string
	// UnixPath, if set, also serves usbmuxd on this unix socket (an existing socket file
	// is replaced).
	UnixPath string
	// StateDir, if set, keeps the usbmuxd pair store, the SystemBUID and each device's
	// pairing (under devices/<UDID>/) across restarts.
	StateDir string
	// Logger receives debug logs of the protocol traffic; nil discards them.
	Logger *slog.Logger
	// HeartbeatInterval is the Marco interval of com.apple.mobile.heartbeat (0 =
	// DefaultHeartbeatInterval); tests shorten it to see a lost link quickly.
	HeartbeatInterval time.Duration
}

// Sim is a running simulator: one fake usbmuxd serving any number of simulated devices.
// All methods are safe for concurrent use.
type Sim struct {
	opts   Options
	log    *slog.Logger
	buid   string
	ctx    context.Context // the simulator's own lifetime; cancelled by Close
	cancel context.CancelFunc

	listeners []net.Listener
	wg        sync.WaitGroup

	mu        sync.Mutex
	closed    bool
	devices   map[string]*Device // by UDID
	order     []string           // UDIDs in AddDevice order
	entries   map[int]*entry     // by usbmuxd DeviceID, only attached ones
	nextID    int
	conns     map[net.Conn]*connInfo
	direct    map[net.Listener]struct{} // Wi-Fi direct listeners of devices
	watchers  map[*watcher]struct{}
	records   map[string][]byte // usbmuxd pair store: PairRecordID → serialized record
	muxConns  int64
	recordDir string
	mdns      *mdnsState // mDNS announcer, nil until StartMDNS
}

// entry is one usbmuxd device-list entry: a device on one transport.
type entry struct {
	id   int
	dev  *Device
	wifi bool
}

// connInfo records which device entry a connection was routed to, so that a detach can
// cut it like a pulled cable.
type connInfo struct {
	dev    *Device
	entry  int
	cancel context.CancelFunc // ends the device-side handler's context
}

// Transport names as usbmuxd reports them in ConnectionType.
const (
	TransportUSB     = "USB"
	TransportNetwork = "Network"
)

// Start creates the simulator and starts serving usbmuxd. Call Close to stop it.
func Start(opts Options) (*Sim, error) {
	if opts.TCPAddr == "" {
		opts.TCPAddr = "127.0.0.1:0"
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := checkLoopback(opts.TCPAddr); err != nil {
		return nil, err
	}
	s := &Sim{
		opts:     opts,
		log:      log,
		devices:  map[string]*Device{},
		entries:  map[int]*entry{},
		nextID:   1,
		conns:    map[net.Conn]*connInfo{},
		direct:   map[net.Listener]struct{}{},
		watchers: map[*watcher]struct{}{},
		records:  map[string][]byte{},
	}
	if err := s.loadState(); err != nil {
		return nil, err
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())

	tl, err := net.Listen("tcp", opts.TCPAddr)
	if err != nil {
		s.cancel()
		return nil, fmt.Errorf("devicesim: listen %s: %w", opts.TCPAddr, err)
	}
	s.listeners = append(s.listeners, tl)
	if opts.UnixPath != "" {
		if fi, err := os.Lstat(opts.UnixPath); err == nil && fi.Mode()&os.ModeSocket != 0 {
			os.Remove(opts.UnixPath)
		}
		ul, err := net.Listen("unix", opts.UnixPath)
		if err != nil {
			tl.Close()
			s.cancel()
			return nil, fmt.Errorf("devicesim: listen %s: %w", opts.UnixPath, err)
		}
		s.listeners = append(s.listeners, ul)
	}
	for _, l := range s.listeners {
		s.wg.Add(1)
		go s.acceptLoop(l)
	}
	return s, nil
}

func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("devicesim: bad listen address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("devicesim: refusing to listen on %q: only loopback addresses are allowed", addr)
	}
	return nil
}

// loadState reads the SystemBUID and the usbmuxd pair store from StateDir.
func (s *Sim) loadState() error {
	if s.opts.StateDir == "" {
		s.buid = lockdown.NewUUID()
		return nil
	}
	s.recordDir = filepath.Join(s.opts.StateDir, "pairrecords")
	if err := os.MkdirAll(s.recordDir, 0o700); err != nil {
		return fmt.Errorf("devicesim: create state dir: %w", err)
	}
	cfgPath := filepath.Join(s.opts.StateDir, "SystemConfiguration.plist")
	var cfg struct{ SystemBUID string }
	b, err := os.ReadFile(cfgPath)
	switch {
	case err == nil:
		if err := plistio.Unmarshal(b, &cfg); err != nil {
			return fmt.Errorf("devicesim: read %s: %w", cfgPath, err)
		}
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("devicesim: %w", err)
	}
	if cfg.SystemBUID == "" {
		cfg.SystemBUID = lockdown.NewUUID()
		b, err := plistio.Marshal(cfg, plistio.XML)
		if err != nil {
			return fmt.Errorf("devicesim: encode system config: %w", err)
		}
		if err := atomicfile.WriteFile(cfgPath, b, 0o600); err != nil {
			return fmt.Errorf("devicesim: %w", err)
		}
	}
	s.buid = cfg.SystemBUID
	des, err := os.ReadDir(s.recordDir)
	if err != nil {
		return fmt.Errorf("devicesim: read pair store: %w", err)
	}
	for _, de := range des {
		name := de.Name()
		id, ok := cutSuffix(name, ".plist")
		if !ok || !validRecordID(id) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.recordDir, name))
		if err != nil {
			return fmt.Errorf("devicesim: read pair store: %w", err)
		}
		s.records[id] = b
	}
	return nil
}

func cutSuffix(s, suffix string) (string, bool) {
	if len(s) < len(suffix) || s[len(s)-len(suffix):] != suffix {
		return s, false
	}
	return s[:len(s)-len(suffix)], true
}

// Addr is the TCP address of the fake usbmuxd ("127.0.0.1:PORT"), the value to put in
// USBMUXD_SOCKET_ADDRESS: the only form both libimobiledevice and go-ios accept.
func (s *Sim) Addr() string { return s.listeners[0].Addr().String() }

// UnixPath is the unix socket path, or "" when none was requested.
// USBMUXD_SOCKET_ADDRESS=UNIX://<path> works for both libimobiledevice (which strips
// "UNIX:") and go-ios v1.3.2 (which honours an explicit scheme, case-insensitively).
func (s *Sim) UnixPath() string { return s.opts.UnixPath }

// SystemBUID is the value ReadBUID returns and every pair record carries.
func (s *Sim) SystemBUID() string { return s.buid }

// MuxConnections counts the usbmuxd control connections accepted so far.
func (s *Sim) MuxConnections() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.muxConns
}

// Close stops serving, cuts every connection (device services see their context
// cancelled and their connection closed) and waits for all goroutines to end.
func (s *Sim) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	for w := range s.watchers {
		w.stop()
	}
	for l := range s.direct {
		l.Close()
	}
	s.stopMDNSLocked()
	s.mu.Unlock()
	s.cancel()
	var errs []error
	for _, l := range s.listeners {
		if err := l.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	s.wg.Wait()
	if s.opts.UnixPath != "" {
		os.Remove(s.opts.UnixPath)
	}
	return errors.Join(errs...)
}

func (s *Sim) acceptLoop(l net.Listener) {
	defer s.wg.Done()
	for {
		c, err := l.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.log.Debug("usbmuxd accept", "err", err)
			}
			return
		}
		if !s.serve(c, &s.muxConns, func() { s.serveMux(c) }) {
			return
		}
	}
}

// serve tracks c (so that Close and a detach can cut it) and runs handle on a goroutine
// that Close waits for, then closes c. count, when not nil, is incremented under the same
// lock. When the simulator is closing, c is closed at once and serve returns false.
func (s *Sim) serve(c net.Conn, count *int64, handle func()) bool {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.Close()
		return false
	}
	s.conns[c] = &connInfo{}
	if count != nil {
		*count++
	}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer s.untrack(c)
		defer c.Close()
		handle()
	}()
	return true
}

func (s *Sim) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// route marks c as a pipe to entry id of d and returns the context its device-side
// handler runs under: cancelled when the entry is detached or the simulator closes. It
// fails if the entry vanished meanwhile.
func (s *Sim) route(c net.Conn, d *Device, id int) (context.Context, context.CancelFunc, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ci := s.conns[c]
	if e := s.entries[id]; e == nil || e.dev != d || ci == nil {
		return nil, nil, false
	}
	ctx, cancel := context.WithCancel(s.ctx)
	ci.dev, ci.entry, ci.cancel = d, id, cancel
	return ctx, cancel, true
}

// AddDevice creates a simulated device and, unless cfg.Detached, announces it on the
// transports cfg asks for. Generating a new pairing takes a few hundred milliseconds (three
// RSA keys); with a StateDir it happens once per UDID.
func (s *Sim) AddDevice(cfg DeviceConfig) (*Device, error) {
	cfg = cfg.withDefaults(s.countDevices())
	if !validRecordID(cfg.Identity.UDID) {
		return nil, fmt.Errorf("devicesim: invalid UDID %q", cfg.Identity.UDID)
	}
	s.mu.Lock()
	_, dup := s.devices[cfg.Identity.UDID]
	s.mu.Unlock()
	if dup {
		return nil, fmt.Errorf("devicesim: device %s already added", cfg.Identity.UDID)
	}
	var dir string
	if s.opts.StateDir != "" {
		dir = filepath.Join(s.opts.StateDir, "devices", cfg.Identity.UDID)
	}
	p, err := loadOrCreatePairing(dir, s.buid, cfg.Identity.WiFiAddress)
	if err != nil {
		return nil, fmt.Errorf("devicesim: device %s: %w", cfg.Identity.UDID, err)
	}
	d, err := newDevice(s, cfg, p)
	if err != nil {
		return nil, err
	}
	rec, err := p.Record.Marshal()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("devicesim: simulator closed")
	}
	if _, dup := s.devices[cfg.Identity.UDID]; dup {
		return nil, fmt.Errorf("devicesim: device %s already added", cfg.Identity.UDID)
	}
	// Pre-provision the record the way a host that paired earlier would have saved it. A
	// record already in the persisted store (same pairing) is left alone.
	if _, ok := s.records[cfg.Identity.UDID]; !ok && !cfg.Unpaired {
		if err := s.saveRecordLocked(cfg.Identity.UDID, rec); err != nil {
			return nil, err
		}
	}
	s.devices[cfg.Identity.UDID] = d
	s.order = append(s.order, cfg.Identity.UDID)
	if !cfg.Detached {
		s.attachLocked(d)
	}
	return d, nil
}

func (s *Sim) countDevices() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.devices)
}

// Device returns the device with this UDID, or nil.
func (s *Sim) Device(udid string) *Device {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.devices[udid]
}

// Devices returns every added device (attached or not) in the order they were added.
func (s *Sim) Devices() []*Device {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Device, 0, len(s.order))
	for _, u := range s.order {
		out = append(out, s.devices[u])
	}
	return out
}

// Attach plugs the device in on its configured transports: each gets a new DeviceID (as
// with a real usbmuxd) and listeners receive Attached events. Attaching an attached
// device is a no-op.
func (s *Sim) Attach(udid string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.devices[udid]
	if d == nil {
		return fmt.Errorf("devicesim: no device %s", udid)
	}
	s.attachLocked(d)
	return nil
}

// Detach unplugs the device from every transport: listeners receive Detached events,
// Connect to its old DeviceIDs fails with BADDEV and its open connections are cut.
func (s *Sim) Detach(udid string) error {
	return s.SetTransports(udid, false, false)
}

// SetTransports changes, at runtime, whether the device is present over USB and over
// Wi-Fi, and makes Attach use that choice from now on. Removing a transport detaches that
// entry only; adding one attaches it.
func (s *Sim) SetTransports(udid string, usb, wifi bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.devices[udid]
	if d == nil {
		return fmt.Errorf("devicesim: no device %s", udid)
	}
	if usb || wifi {
		d.usb, d.wifi = usb, wifi
	}
	if !usb && d.usbID != 0 {
		s.detachEntryLocked(d.usbID)
		d.usbID = 0
	}
	if !wifi && d.wifiID != 0 {
		s.detachEntryLocked(d.wifiID)
		d.wifiID = 0
	}
	if usb && d.usbID == 0 {
		d.usbID = s.addEntryLocked(d, false)
	}
	if wifi && d.wifiID == 0 {
		d.wifiID = s.addEntryLocked(d, true)
	}
	return nil
}

func (s *Sim) attachLocked(d *Device) {
	if d.usb && d.usbID == 0 {
		d.usbID = s.addEntryLocked(d, false)
	}
	if d.wifi && d.wifiID == 0 {
		d.wifiID = s.addEntryLocked(d, true)
	}
}

func (s *Sim) addEntryLocked(d *Device, wifi bool) int {
	e := &entry{id: s.nextID, dev: d, wifi: wifi}
	s.nextID++
	s.entries[e.id] = e
	if wifi {
		s.startDirectLocked(d, e.id)
	}
	ev := attachedMessage(e)
	for w := range s.watchers {
		w.send(ev)
	}
	return e.id
}

func (s *Sim) detachEntryLocked(id int) {
	e, ok := s.entries[id]
	if !ok {
		return
	}
	delete(s.entries, id)
	if e.wifi {
		s.stopDirectLocked(e.dev)
	}
	for c, ci := range s.conns {
		if ci.entry == id {
			ci.cancel()
			c.Close()
		}
	}
	ev := map[string]any{"MessageType": "Detached", "DeviceID": id}
	for w := range s.watchers {
		w.send(ev)
	}
}

// entryList returns the attached entries ordered by DeviceID.
func (s *Sim) entryListLocked() []*entry {
	out := make([]*entry, 0, len(s.entries))
	for _, e := range s.entries {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// attachedMessage builds the Attached dict (protocol.md §2.5).
func attachedMessage(e *entry) map[string]any {
	id := e.dev.cfg.Identity
	props := map[string]any{
		"DeviceID":     e.id,
		"SerialNumber": id.UDID,
	}
	if e.dev.cfg.SerialUDID {
		props["SerialNumber"] = stripDash(id.UDID)
	}
	if e.wifi {
		props["ConnectionType"] = TransportNetwork
		props["EscapedFullServiceName"] = MDNSInstanceName(e.dev.AnnouncedWiFiAddress()) + "." + MDNSService + ".local."
		props["InterfaceIndex"] = 1
		props["NetworkAddress"] = e.dev.networkAddress()
	} else {
		props["ConnectionType"] = TransportUSB
		props["ConnectionSpeed"] = 480000000
		props["LocationID"] = 0x01100000 + e.id
		props["ProductID"] = 0x12a8
		props["UDID"] = id.UDID
		props["USBSerialNumber"] = stripDash(id.UDID)
	}
	return map[string]any{"MessageType": "Attached", "DeviceID": e.id, "Properties": props}
}

func stripDash(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '-' {
			out = append(out, s[i])
		}
	}
	return string(out)
}

// saveRecordLocked stores a pair record in the usbmuxd store (and on disk with a StateDir).
func (s *Sim) saveRecordLocked(id string, rec []byte) error {
	if s.recordDir != "" {
		if err := atomicfile.WriteFile(filepath.Join(s.recordDir, id+".plist"), rec, 0o600); err != nil {
			return fmt.Errorf("devicesim: save pair record: %w", err)
		}
	}
	s.records[id] = append([]byte(nil), rec...)
	return nil
}

func (s *Sim) deleteRecordLocked(id string) error {
	if _, ok := s.records[id]; !ok {
		return os.ErrNotExist
	}
	if s.recordDir != "" {
		if err := os.Remove(filepath.Join(s.recordDir, id+".plist")); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("devicesim: delete pair record: %w", err)
		}
	}
	delete(s.records, id)
	return nil
}

// watcher is one Listen subscriber. Events are queued without blocking the simulator; a
// subscriber that falls 64 events behind is disconnected rather than slowing everyone.
type watcher struct {
	ch   chan map[string]any
	once sync.Once
	done chan struct{}
}

func (w *watcher) send(ev map[string]any) {
	select {
	case w.ch <- ev:
	default:
		w.stop()
	}
}

func (w *watcher) stop() { w.once.Do(func() { close(w.done) }) }

// serveMux runs the usbmuxd control protocol on one client connection until the client
// leaves, turns it into a device pipe (Connect) or into an event stream (Listen).
func (s *Sim) serveMux(c net.Conn) {
	for {
		h, payload, err := readMuxPacket(c)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				s.log.Debug("usbmuxd read", "err", err)
			}
			return
		}
		if h.Version != muxVersionPlist {
			// Binary protocol: tell libusbmuxd-style clients to use plist and stop.
			c.Write(encodeMuxBinaryResult(h.Tag, muxBadVersion))
			return
		}
		req, err := decodeMuxRequest(payload)
		if err != nil {
			s.log.Debug("usbmuxd request", "err", err)
			s.reply(c, h.Tag, result(muxBadCommand))
			return
		}
		s.log.Debug("usbmuxd request", "type", req.MessageType, "tag", h.Tag)
		switch req.MessageType {
		case "ListDevices":
			s.mu.Lock()
			list := []any{}
			for _, e := range s.entryListLocked() {
				list = append(list, attachedMessage(e))
			}
			s.mu.Unlock()
			if !s.reply(c, h.Tag, map[string]any{"DeviceList": list}) {
				return
			}
		case "ReadBUID":
			if !s.reply(c, h.Tag, map[string]any{"BUID": s.buid}) {
				return
			}
		case "ReadPairRecord":
			if !s.reply(c, h.Tag, s.readPairRecord(req)) {
				return
			}
		case "SavePairRecord":
			if !s.reply(c, h.Tag, s.savePairRecord(req)) {
				return
			}
		case "DeletePairRecord":
			if !s.reply(c, h.Tag, s.deletePairRecord(req)) {
				return
			}
		case "Listen":
			s.listen(c, h.Tag)
			return
		case "Connect":
			d, port, code := s.connectTarget(req)
			if code != muxOK {
				if !s.reply(c, h.Tag, result(code)) {
					return
				}
				continue
			}
			// Claim the target before answering, so that a service port is never
			// reported connected and then refused.
			handler := d.claim(port)
			if d.stalled() != nil {
				handler = nil // the device is out of reach
			}
			if handler == nil {
				if !s.reply(c, h.Tag, result(muxConnRefused)) {
					return
				}
				continue
			}
			ctx, cancel, ok := s.route(c, d, int(req.DeviceID))
			if !ok {
				s.reply(c, h.Tag, result(muxBadDevice))
				return
			}
			defer cancel()
			if !s.reply(c, h.Tag, result(muxOK)) {
				return
			}
			d.counters.muxConnects.Add(1)
			handler(ctx, &holeConn{Conn: c, d: d, done: ctx.Done()})
			return
		default:
			if !s.reply(c, h.Tag, result(muxBadCommand)) {
				return
			}
		}
	}
}

func result(n int) map[string]any { return map[string]any{"MessageType": "Result", "Number": n} }

func (s *Sim) reply(c net.Conn, tag uint32, v any) bool {
	b, err := encodeMuxPlist(tag, v)
	if err != nil {
		s.log.Debug("usbmuxd reply", "err", err)
		return false
	}
	_, err = c.Write(b)
	return err == nil
}

func (s *Sim) connectTarget(req muxRequest) (*Device, uint16, int) {
	if !req.HasDeviceID || !req.HasPort {
		return nil, 0, muxBadCommand
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entries[int(req.DeviceID)]
	if e == nil {
		return nil, 0, muxBadDevice
	}
	return e.dev, req.Port, muxOK
}

func (s *Sim) readPairRecord(req muxRequest) map[string]any {
	if !req.HasRecordID || !validRecordID(req.PairRecordID) {
		return result(muxEINVAL)
	}
	s.mu.Lock()
	rec, ok := s.records[req.PairRecordID]
	if !ok {
		// A host that knows the device by its dashless USB serial (SerialUDID) asks for the
		// record under that spelling; usbmuxd keys records by the device's UDID.
		rec, ok = s.records[lockdown.CanonicalUDID(req.PairRecordID)]
	}
	s.mu.Unlock()
	if !ok {
		return result(muxENOENT)
	}
	return map[string]any{"PairRecordData": rec}
}

func (s *Sim) savePairRecord(req muxRequest) map[string]any {
	if !req.HasRecordID || !validRecordID(req.PairRecordID) || len(req.PairRecordData) == 0 {
		return result(muxEINVAL)
	}
	var probe map[string]any
	if err := plistio.Unmarshal(req.PairRecordData, &probe); err != nil {
		return result(muxEINVAL)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.saveRecordLocked(req.PairRecordID, req.PairRecordData); err != nil {
		s.log.Debug("usbmuxd save pair record", "err", err)
		return result(5) // EIO
	}
	if req.HasDeviceID {
		if e := s.entries[int(req.DeviceID)]; e != nil {
			ev := map[string]any{"MessageType": "Paired", "DeviceID": e.id}
			for w := range s.watchers {
				w.send(ev)
			}
		}
	}
	return result(muxOK)
}

func (s *Sim) deletePairRecord(req muxRequest) map[string]any {
	if !req.HasRecordID || !validRecordID(req.PairRecordID) {
		return result(muxEINVAL)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.deleteRecordLocked(req.PairRecordID); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return result(muxENOENT)
		}
		return result(5)
	}
	return result(muxOK)
}

// listen turns c into an event stream: Result 0, one Attached per present entry, then live
// Attached/Detached/Paired events until the client closes the socket or the sim stops.
func (s *Sim) listen(c net.Conn, tag uint32) {
	w := &watcher{ch: make(chan map[string]any, 64), done: make(chan struct{})}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	// Snapshot and subscribe under one lock so no event falls between them.
	initial := []map[string]any{}
	for _, e := range s.entryListLocked() {
		initial = append(initial, attachedMessage(e))
	}
	s.watchers[w] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.watchers, w)
		s.mu.Unlock()
	}()
	if !s.reply(c, tag, result(muxOK)) {
		return
	}
	for _, ev := range initial {
		if !s.reply(c, 0, ev) {
			return
		}
	}
	// A listening client sends nothing more; a read returning means it went away.
	gone := make(chan struct{})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(gone)
		io.Copy(io.Discard, c)
	}()
	defer func() { c.Close(); <-gone }()
	for {
		select {
		case ev := <-w.ch:
			if !s.reply(c, 0, ev) {
				return
			}
		case <-w.done:
			return
		case <-gone:
			return
		}
	}
}
