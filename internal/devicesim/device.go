package devicesim

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Notifier posts a device-side notification to the device's notification_proxy observers.
// It is an alias of the interface literal so that a package declaring the same alias can
// implement BackupService without importing devicesim.
type Notifier = interface{ Post(name string) }

// BackupService serves one com.apple.mobilebackup2 connection (device side). rw is the
// service connection after TLS; Serve returns when the exchange ends or ctx is cancelled
// (the simulator closes rw too). backupsim.Device implements it.
type BackupService interface {
	Serve(ctx context.Context, rw io.ReadWriter, n Notifier) error
}

// Identity is what lockdownd reports about a device. Empty fields get defaults.
type Identity struct {
	UDID           string // 25-char dashed form, e.g. 00008110-000A1B2C3D4E5F60
	DeviceName     string
	ProductType    string // e.g. iPhone14,5
	ProductVersion string // e.g. 17.5.1
	BuildVersion   string
	SerialNumber   string
	PhoneNumber    string
	IMEI           string
	ICCID          string
	HardwareModel  string
	WiFiAddress    string // Wi-Fi MAC, aa:bb:cc:dd:ee:ff
}

// DefaultIdentity returns a plausible, deterministic identity for the i-th simulated
// device (i ≥ 0), so scripts and tests get stable UDIDs.
func DefaultIdentity(i int) Identity {
	return Identity{
		UDID:           fmt.Sprintf("00008110-%016X", uint64(0x5A0000000000)+uint64(i)),
		DeviceName:     fmt.Sprintf("Simulated iPhone %d", i+1),
		ProductType:    "iPhone14,5",
		ProductVersion: "17.5.1",
		BuildVersion:   "21F90",
		SerialNumber:   fmt.Sprintf("SIMF%08d", i+1),
		PhoneNumber:    fmt.Sprintf("+1 (555) 010-%04d", i+1),
		IMEI:           fmt.Sprintf("3569%011d", i+1),
		ICCID:          fmt.Sprintf("8901410%012d", i+1),
		HardwareModel:  "D17AP",
		WiFiAddress:    fmt.Sprintf("a4:c3:61:5a:%02x:%02x", (i>>8)&0xff, i&0xff),
	}
}

func (id Identity) withDefaults(i int) Identity {
	def := DefaultIdentity(i)
	set := func(dst *string, v string) {
		if *dst == "" {
			*dst = v
		}
	}
	set(&id.UDID, def.UDID)
	set(&id.DeviceName, def.DeviceName)
	set(&id.ProductType, def.ProductType)
	set(&id.ProductVersion, def.ProductVersion)
	set(&id.BuildVersion, def.BuildVersion)
	set(&id.SerialNumber, def.SerialNumber)
	set(&id.PhoneNumber, def.PhoneNumber)
	set(&id.IMEI, def.IMEI)
	set(&id.ICCID, def.ICCID)
	set(&id.HardwareModel, def.HardwareModel)
	set(&id.WiFiAddress, def.WiFiAddress)
	return id
}

// DeviceConfig describes one simulated device.
type DeviceConfig struct {
	Identity Identity
	// USB and WiFi choose the transports the device is announced on. Both false means USB.
	USB, WiFi bool
	// Detached adds the device without announcing it; call Sim.Attach later.
	Detached bool
	// Backup serves com.apple.mobilebackup2. Nil makes StartService for it fail with
	// ServiceProhibited. If it also has a `WillEncrypt() bool` method, lockdown's
	// com.apple.mobile.backup WillEncrypt reports it.
	Backup BackupService
	// AllowMissingEscrowBag lets StartService com.apple.mobilebackup2 succeed without an
	// EscrowBag (go-ios's stock StartService sends none). A wrong bag is always refused.
	AllowMissingEscrowBag bool
	// DropBackupAfter, if > 0, cuts each mobilebackup2 connection abruptly once that many
	// bytes (both directions, TLS records included) have crossed it.
	DropBackupAfter int64
	// DropLinkPlan, if set, says for the n-th mobilebackup2 connection (1-based) after how
	// many bytes the link drops mid-backup, once (0: it does not). Unlike DropBackupAfter, which
	// cuts every attempt, the next attempt then goes through: the phone slept or walked out of
	// range and came back (real-devices.md row 7; backupsim.RealisticLinkDrops).
	DropLinkPlan func(n int64) int64
	// PasswordProtected is lockdown's PasswordProtected value (a passcode is set).
	PasswordProtected bool
	// BatteryLevel (percent, default 87) and Charging are served in com.apple.mobile.battery.
	BatteryLevel int
	Charging     bool
	// NoInstallationProxy makes StartService com.apple.mobile.installation_proxy fail with
	// InvalidService, as on a device where the service is unavailable; hosts must still back up.
	NoInstallationProxy bool
	// AnnouncedWiFiAddress is the Wi-Fi address the device announces over mDNS and in
	// usbmuxd's EscapedFullServiceName ("" = Identity.WiFiAddress, the one in the pair
	// record). Set it to PrivateWiFiAddress(udid) for a device using a private address.
	AnnouncedWiFiAddress string

	// Unpaired starts the device trusting no host and leaves the usbmuxd pair store empty:
	// a host must send lockdown Pair (see trust.go). TrustDelay is how long the simulated
	// user takes to tap Trust (Pair answers PairingDialogResponsePending meanwhile);
	// TrustDeny makes the user tap Don't Trust (UserDeniedPairing). PairLocked is how many
	// Pair requests find the device locked (PasswordProtected) before the dialog can show.
	Unpaired   bool
	TrustDelay time.Duration
	TrustDeny  bool
	PairLocked int
	// SerialUDID makes usbmuxd list the device under the 24-hex-digit USB serial without
	// the dash (00008110001A2B3C4D5E6F60) while lockdown says 00008110-001A2B3C4D5E6F60, as
	// the kernel log in libimobiledevice #1381 shows a real device's serial.
	SerialUDID bool
}

func (c DeviceConfig) withDefaults(i int) DeviceConfig {
	c.Identity = c.Identity.withDefaults(i)
	if !c.USB && !c.WiFi {
		c.USB = true
	}
	if c.BatteryLevel == 0 {
		c.BatteryLevel = 87
	}
	return c
}

// Counters are cumulative per-device connection counts, for tests that assert how a client
// used the device.
type Counters struct {
	MuxConnects       int64 // successful usbmuxd Connects to this device (any port)
	Lockdown          int64 // lockdownd connections
	Sessions          int64 // lockdown sessions started (TLS established)
	NotificationProxy int64 // notification_proxy connections
	AFC               int64 // AFC connections
	Backup            int64 // mobilebackup2 connections
	BackupDrops       int64 // mobilebackup2 connections cut by DropBackupAfter or DropLinkPlan
	Posted            int64 // notifications posted (by hosts and by the device)
	Relayed           int64 // RelayNotification messages delivered to observers
	ServicesStarted   int64 // successful StartService replies
	DirectConnects    int64 // Wi-Fi direct TCP connections (libimobiledevice -n), any port
	Heartbeats        int64 // com.apple.mobile.heartbeat connections
	Polos             int64 // Polo answers received on them
}

type counters struct {
	muxConnects, lockdown, sessions, np, afc, backup, backupDrops, posted, relayed, started, directConnects, heartbeats, polos atomic.Int64
	// backupStarts counts mobilebackup2 StartService calls: the n of DropLinkPlan.
	backupStarts atomic.Int64
}

// Device is one simulated iPhone. Its methods are safe for concurrent use.
type Device struct {
	sim     *Sim
	cfg     DeviceConfig
	pairing *pairing
	tlsCfg  *tls.Config

	// Guarded by sim.mu: transport choice and current usbmuxd DeviceIDs (0 = absent).
	usb, wifi     bool
	usbID, wifiID int

	counters counters
	np       *npHub
	fs       *afcFS

	mu         sync.Mutex
	nextPort   uint16
	pending    map[uint16]pendingService
	wifiLock   bool // EnableWifiConnections
	dropBackup int64
	direct     *directNet  // Wi-Fi direct listener while attached over Wi-Fi
	hbSilent   atomic.Bool // heartbeat sends no Marco (out of range without a FIN)
	hole       blackhole
	trusted    []trustedHost
	dialog     trustDialog
}

type pendingService struct {
	name    string
	expires time.Time
	serve   func(ctx context.Context, c net.Conn)
}

// LockdownPort is lockdownd's device port.
const LockdownPort = 62078

// pendingTTL is how long a started service waits for its connection, like lockdownd.
const pendingTTL = 30 * time.Second

func newDevice(s *Sim, cfg DeviceConfig, p *pairing) (*Device, error) {
	cert, err := p.tlsCertificate()
	if err != nil {
		return nil, fmt.Errorf("devicesim: device %s: %w", cfg.Identity.UDID, err)
	}
	d := &Device{
		sim:        s,
		cfg:        cfg,
		pairing:    p,
		usb:        cfg.USB,
		wifi:       cfg.WiFi,
		np:         newNPHub(),
		fs:         newAFCFS(cfg.Identity.ProductType),
		nextPort:   49152,
		pending:    map[uint16]pendingService{},
		wifiLock:   cfg.WiFi,
		dropBackup: cfg.DropBackupAfter,
		dialog:     trustDialog{lockedFor: cfg.PairLocked},
	}
	if loaded, err := d.loadTrust(); err != nil {
		return nil, fmt.Errorf("devicesim: device %s: %w", cfg.Identity.UDID, err)
	} else if !loaded && !cfg.Unpaired {
		r := p.Record
		d.trusted = []trustedHost{{HostID: r.HostID, RootCertificate: r.RootCertificate, HostCertificate: r.HostCertificate, EscrowBag: r.EscrowBag}}
	}
	seedITunesControl(d.fs, cfg.Identity.UDID)
	d.tlsCfg = &tls.Config{
		Certificates: []tls.Certificate{cert},
		// Real iOS speaks TLS 1.2; every client studied offers it.
		MinVersion:            tls.VersionTLS12,
		MaxVersion:            tls.VersionTLS12,
		ClientAuth:            tls.RequestClientCert,
		VerifyPeerCertificate: d.verifyHost,
	}
	return d, nil
}

// UDID returns the device's UDID.
func (d *Device) UDID() string { return d.cfg.Identity.UDID }

// Identity returns the identity lockdownd reports.
func (d *Device) Identity() Identity { return d.cfg.Identity }

// PairRecord returns the pair record the device trusts (a copy).
func (d *Device) PairRecord() PairRecord {
	r := d.pairing.Record
	r.EscrowBag = append([]byte(nil), r.EscrowBag...)
	return r
}

// DeviceIDs returns the current usbmuxd DeviceIDs on USB and Wi-Fi (0 when absent).
func (d *Device) DeviceIDs() (usb, wifi int) {
	d.sim.mu.Lock()
	defer d.sim.mu.Unlock()
	return d.usbID, d.wifiID
}

// Counters returns a snapshot of the connection counters.
func (d *Device) Counters() Counters {
	c := &d.counters
	return Counters{
		MuxConnects:       c.muxConnects.Load(),
		Lockdown:          c.lockdown.Load(),
		Sessions:          c.sessions.Load(),
		NotificationProxy: c.np.Load(),
		AFC:               c.afc.Load(),
		Backup:            c.backup.Load(),
		BackupDrops:       c.backupDrops.Load(),
		Posted:            c.posted.Load(),
		Relayed:           c.relayed.Load(),
		ServicesStarted:   c.started.Load(),
		DirectConnects:    c.directConnects.Load(),
		Heartbeats:        c.heartbeats.Load(),
		Polos:             c.polos.Load(),
	}
}

// Post posts a notification from the device side (e.g. the backup service announcing
// com.apple.LocalAuthentication.ui.presented) to every notification_proxy connection of
// this device that observes name. It never blocks for long: slow observers are cut.
func (d *Device) Post(name string) {
	d.counters.posted.Add(1)
	d.counters.relayed.Add(int64(d.np.post(name)))
}

// Observers counts the notification_proxy connections observing name: a test that posts
// right after a host's Observe waits for it instead of sleeping.
func (d *Device) Observers(name string) int { return d.np.observers(name) }

// SetDropBackupAfter changes the DropBackupAfter fault for mobilebackup2 connections
// started from now on (0 disables it).
func (d *Device) SetDropBackupAfter(n int64) {
	d.mu.Lock()
	d.dropBackup = n
	d.mu.Unlock()
}

// WifiConnectionsEnabled reports lockdown's EnableWifiConnections (initially cfg.WiFi).
func (d *Device) WifiConnectionsEnabled() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.wifiLock
}

// AFCFile returns the content of a file in the device's AFC filesystem.
func (d *Device) AFCFile(path string) ([]byte, bool) { return d.fs.readFile(path) }

// WriteAFCFile creates or replaces a file in the device's AFC filesystem, creating parent
// directories.
func (d *Device) WriteAFCFile(path string, data []byte) { d.fs.writeFile(path, data) }

// AFCLocked reports whether any AFC connection holds a lock on path.
func (d *Device) AFCLocked(path string) bool { return d.fs.locked(path) }

// startService allocates a fresh port for one connection to the named service. A device
// attached over Wi-Fi also listens on that port at its own loopback address, for clients
// that connect directly instead of through usbmuxd.
func (d *Device) startService(name string, serve func(ctx context.Context, c net.Conn)) uint16 {
	l, lport := d.listenService()
	d.mu.Lock()
	now := time.Now()
	for p, ps := range d.pending {
		if now.After(ps.expires) {
			delete(d.pending, p)
		}
	}
	if _, busy := d.pending[lport]; l != nil && (busy || lport == LockdownPort) {
		l.Close() // a usbmuxd-only port took that number earlier; fall back to the counter
		l, lport = nil, 0
	}
	port := lport
	for port == 0 {
		p := d.nextPort
		d.nextPort++
		if d.nextPort < 49152 {
			d.nextPort = 49152
		}
		if _, busy := d.pending[p]; !busy && p != LockdownPort {
			port = p
		}
	}
	d.pending[port] = pendingService{name: name, expires: now.Add(pendingTTL), serve: serve}
	d.mu.Unlock()
	if l != nil {
		d.sim.serveServiceListener(l, d, port)
	}
	return port
}

// claim returns the handler for a Connect to port, consuming a started service port: one
// connection per StartService, like lockdownd. Nil means nobody listens there.
func (d *Device) claim(port uint16) func(ctx context.Context, c net.Conn) {
	if port == LockdownPort {
		return d.serveLockdown
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	ps, ok := d.pending[port]
	if !ok || time.Now().After(ps.expires) {
		delete(d.pending, port)
		return nil
	}
	delete(d.pending, port)
	return ps.serve
}

// serveService wraps a started service: TLS as announced by EnableServiceSSL, then fn.
func (d *Device) serveService(name string, fn func(ctx context.Context, rw io.ReadWriter) error) func(context.Context, net.Conn) {
	return func(ctx context.Context, c net.Conn) {
		tc := tls.Server(c, d.tlsCfg)
		defer tc.Close()
		hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			d.sim.log.Debug("service TLS handshake", "service", name, "udid", d.UDID(), "err", err)
			return
		}
		if err := fn(ctx, tc); err != nil {
			d.sim.log.Debug("service ended", "service", name, "udid", d.UDID(), "err", err)
		}
	}
}

// countingConn cuts the connection once limit bytes have crossed it in either direction:
// a pulled cable in the middle of a transfer.
type countingConn struct {
	net.Conn
	limit   int64
	n       atomic.Int64
	dropped atomic.Bool
	onDrop  func()
}

func (c *countingConn) account(n int) error {
	if c.n.Add(int64(n)) >= c.limit {
		if c.dropped.CompareAndSwap(false, true) {
			// Counted before the close: the host sees the reset at once and may read the
			// counters before this goroutine runs again.
			c.onDrop()
			if tc, ok := c.Conn.(*net.TCPConn); ok {
				tc.SetLinger(0) // RST, not an orderly FIN
			}
			c.Conn.Close()
		}
		return net.ErrClosed
	}
	return nil
}

func (c *countingConn) Read(p []byte) (int, error) {
	if c.dropped.Load() {
		return 0, net.ErrClosed
	}
	if rem := c.limit - c.n.Load(); int64(len(p)) > rem && rem > 0 {
		p = p[:rem]
	}
	n, err := c.Conn.Read(p)
	if aerr := c.account(n); aerr != nil && err == nil {
		return n, aerr
	}
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	if c.dropped.Load() {
		return 0, net.ErrClosed
	}
	rem := c.limit - c.n.Load()
	if int64(len(p)) > rem {
		n, _ := c.Conn.Write(p[:max(rem, 0)])
		c.account(len(p))
		return n, net.ErrClosed
	}
	n, err := c.Conn.Write(p)
	if aerr := c.account(n); aerr != nil && err == nil {
		return n, aerr
	}
	return n, err
}
