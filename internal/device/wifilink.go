package device

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/danielpaulus/go-ios/ios"

	"snapback/internal/atomicfile"
	"snapback/internal/plistio"
)

// DefaultPairRecordDir is where the platform's usbmuxd keeps pair records.
func DefaultPairRecordDir() string {
	if runtime.GOOS == "darwin" {
		return "/var/db/lockdown"
	}
	return "/var/lib/lockdown"
}

// errNotThisOne marks an advert that is not (or not for this Host) a device to connect to.
var errNotThisOne = errors.New("not a device to connect to")

// wifiLink is a device found by built-in discovery: where its lockdownd listens, the pair
// record it proved to hold, and its heartbeat. lost is closed when the heartbeat fails.
type wifiLink struct {
	udid     string
	instance string
	mac      string
	addr     string // host:port of lockdownd
	pair     ios.PairRecord

	once    sync.Once
	lost    chan struct{}
	mu      sync.Mutex
	hb      net.Conn
	lostErr error
	conns   map[*trackedConn]struct{} // sessions and services opened over this link
}

// trackedConn is a connection the link closes when it is lost: a device that walks out of
// range sends no FIN, so without this a backup would hang until TCP keepalive gives up.
type trackedConn struct {
	net.Conn
	l    *wifiLink
	once sync.Once
}

func (t *trackedConn) Close() error {
	t.once.Do(func() {
		t.l.mu.Lock()
		delete(t.l.conns, t)
		t.l.mu.Unlock()
	})
	return t.Conn.Close()
}

// track registers c with the link (l may be nil: no link yet, c is returned as is).
func (l *wifiLink) track(c net.Conn) (net.Conn, error) {
	if l == nil {
		return c, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.isLost() {
		c.Close()
		return nil, fmt.Errorf("%w: the Wi-Fi link to %s is lost (%v)", ErrNotFound, l.udid, l.lostErr)
	}
	if l.conns == nil {
		l.conns = map[*trackedConn]struct{}{}
	}
	t := &trackedConn{Conn: c, l: l}
	l.conns[t] = struct{}{}
	return t, nil
}

func (l *wifiLink) entry() Entry {
	return Entry{UDID: l.udid, DeviceID: DirectDeviceID, Transport: WiFi, Transports: []Transport{WiFi}, Via: FoundWiFiDirect, Addr: l.addr}
}

func (l *wifiLink) isLost() bool {
	select {
	case <-l.lost:
		return true
	default:
		return false
	}
}

// markLost records why the link ended; the first reason wins.
func (l *wifiLink) markLost(err error) {
	l.once.Do(func() {
		l.mu.Lock()
		l.lostErr = err
		if l.hb != nil {
			l.hb.Close()
		}
		close(l.lost)
		for t := range l.conns {
			t.Conn.Close()
		}
		l.conns = nil
		l.mu.Unlock()
	})
}

func (l *wifiLink) close() { l.markLost(errors.New("host closed")) }

// pairRecords reads the candidate records: every <UDID>.plist of PairRecordDir, plus
// want's record through the mux when the folder lacks it.
func (h *Host) pairRecords(ctx context.Context, want string) map[string]ios.PairRecord {
	out := map[string]ios.PairRecord{}
	des, err := os.ReadDir(h.cfg.PairRecordDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		h.log.Warn("pair records", "dir", h.cfg.PairRecordDir, "err", err)
	}
	for _, de := range des {
		udid, ok := strings.CutSuffix(de.Name(), ".plist")
		if !ok || !plausibleUDID(udid) {
			continue // SystemConfiguration.plist and strangers
		}
		b, err := os.ReadFile(filepath.Join(h.cfg.PairRecordDir, de.Name()))
		if err != nil || len(b) > 1<<20 {
			continue
		}
		if pr, ok := parsePairRecord(b); ok {
			out[udid] = pr
		}
	}
	if want != "" {
		if recordKey(out, want) == "" {
			if mux, c, err := dialMux(ctx); err == nil {
				stop := bind(ctx, c)
				if pr, err := mux.ReadPair(want); err == nil && len(pr.HostCertificate) > 0 {
					out[want] = pr
				}
				stop()
				c.Close()
			}
		}
	}
	return out
}

// recordKey returns the key of records that names udid (UDIDs are compared without case).
func recordKey(records map[string]ios.PairRecord, udid string) string {
	if udid == "" {
		return ""
	}
	if _, ok := records[udid]; ok {
		return udid
	}
	for k := range records {
		if strings.EqualFold(k, udid) {
			return k
		}
	}
	return ""
}

func plausibleUDID(s string) bool {
	if len(s) < 20 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == '-') {
			return false
		}
	}
	return true
}

func parsePairRecord(b []byte) (ios.PairRecord, bool) {
	var pr ios.PairRecord
	if err := plistio.Unmarshal(b, &pr); err != nil {
		return pr, false
	}
	return pr, len(pr.HostCertificate) > 0 && len(pr.HostPrivateKey) > 0 && pr.HostID != ""
}

// adopt turns an advert into a live link: it finds which paired device sent it, cheaply
// when the Wi-Fi address is known, otherwise by offering pair records until the device
// accepts one (pymobiledevice3 PR #1971 does the same: the advert carries nothing else that
// can be matched offline). It returns nil, nil for a device the mux already serves.
//
// onMux (UDIDs in upper case) says which devices the mux serves; when nil, muxNow is asked,
// only once the advert is known to be new.
func (h *Host) adopt(ctx context.Context, a announcement, want string, onMux map[string]bool, muxNow func() map[string]bool) (*wifiLink, error) {
	h.mu.Lock()
	for _, l := range h.links {
		if l.addr == a.Addr && l.instance == a.Instance && !l.isLost() {
			h.mu.Unlock()
			if want != "" && !strings.EqualFold(want, l.udid) {
				return nil, errNotThisOne
			}
			return l, nil
		}
	}
	learnt := h.learnt[a.MAC]
	quietUntil := h.quiet[a.Instance+" "+a.Addr]
	h.mu.Unlock()
	if time.Now().Before(quietUntil) {
		return nil, fmt.Errorf("%w: fell silent recently; left alone until %s", errNotThisOne, quietUntil.Format(time.TimeOnly))
	}
	if onMux == nil {
		onMux = muxNow()
	}

	records := h.pairRecords(ctx, want)
	byMAC := ""
	for udid, pr := range records {
		if a.MAC != "" && strings.EqualFold(pr.WiFiMACAddress, a.MAC) {
			byMAC = udid
		}
	}
	// Cheap evidence first: a learnt or matching address names the device without a dial.
	for _, hint := range []string{learnt, byMAC} {
		if hint == "" {
			continue
		}
		if onMux[strings.ToUpper(hint)] {
			h.log.Debug("wifi advert left to the mux", "instance", a.Instance, "udid", hint)
			return nil, nil // the mux serves it: do not connect twice
		}
		if want != "" && !strings.EqualFold(hint, want) {
			return nil, errNotThisOne
		}
	}
	var cands []string
	for _, hint := range []string{learnt, byMAC, want} {
		if k := recordKey(records, hint); k != "" && !containsString(cands, k) {
			cands = append(cands, k)
		}
	}
	if want == "" {
		var rest []string
		for udid := range records {
			if !onMux[strings.ToUpper(udid)] && !containsString(cands, udid) {
				rest = append(rest, udid)
			}
		}
		sort.Strings(rest)
		cands = append(cands, rest...)
	}
	if len(cands) == 0 {
		h.log.Debug("wifi advert left to the mux", "instance", a.Instance, "udid", "")
		if want != "" {
			return nil, fmt.Errorf("%w: no pair record for %s in %s or the mux", ErrNotPaired, want, h.cfg.PairRecordDir)
		}
		return nil, errNotThisOne
	}
	for _, udid := range cands {
		s, err := h.prove(ctx, a.Addr, udid, records[udid])
		if err != nil {
			if errors.Is(err, errWrongRecord) {
				continue
			}
			return nil, err
		}
		s.Close()
		l := &wifiLink{udid: udid, instance: a.Instance, mac: a.MAC, addr: a.Addr, pair: records[udid], lost: make(chan struct{})}
		if err := h.startHeartbeat(ctx, l); err != nil {
			return nil, err
		}
		h.remember(a.MAC, udid)
		h.mu.Lock()
		if old := h.links[strings.ToUpper(udid)]; old != nil {
			old.markLost(errors.New("device moved to another address"))
		}
		h.links[strings.ToUpper(udid)] = l
		h.mu.Unlock()
		h.log.Info("wifi device found", "udid", udid, "addr", a.Addr, "instance", a.Instance,
			"matched_by", matchedBy(udid, learnt, byMAC))
		h.publish(Event{Kind: Attached, UDID: udid, DeviceID: DirectDeviceID, Transport: WiFi, Via: FoundWiFiDirect})
		return l, nil
	}
	return nil, errNotThisOne
}

func matchedBy(udid, learnt, byMAC string) string {
	switch udid {
	case learnt:
		return "learnt address"
	case byMAC:
		return "pair record WiFiMACAddress"
	}
	return "pairing proof"
}

func containsString(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// errWrongRecord: the device refused this pair record (it belongs to another device).
var errWrongRecord = errors.New("device does not accept this pair record")

// prove opens a session at addr with udid's record and checks that the device is that
// device: it accepts the HostID, presents the DeviceCertificate of the record in TLS (so
// another device that took over the address cannot pass) and names itself udid.
func (h *Host) prove(ctx context.Context, addr, udid string, pr ios.PairRecord) (*Session, error) {
	e := Entry{UDID: udid, Transport: WiFi, Transports: []Transport{WiFi}, Via: FoundWiFiDirect, Addr: addr}
	s, err := h.dialSession(ctx, e, pr, nil)
	if err != nil {
		return nil, err
	}
	v, err := s.Value(ctx, "", "UniqueDeviceID")
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("%s at %s: %w", udid, addr, err)
	}
	if got, _ := v.(string); !strings.EqualFold(got, udid) {
		s.Close()
		return nil, fmt.Errorf("%w: device at %s says it is %q", errWrongRecord, addr, got)
	}
	return s, nil
}

// dialSession connects to lockdownd at e.Addr over TCP and starts a session with pr,
// verifying the device certificate.
func (h *Host) dialSession(ctx context.Context, e Entry, pr ios.PairRecord, l *wifiLink) (*Session, error) {
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	c, err := d.DialContext(dctx, "tcp", e.Addr)
	cancel()
	if err != nil {
		return nil, ctxErr(ctx, fmt.Errorf("connect to lockdownd of %s at %s: %w", e.UDID, e.Addr, err))
	}
	h.mu.Lock()
	h.dials++
	h.mu.Unlock()
	enableKeepAlive(c)
	if c, err = l.track(c); err != nil {
		return nil, err
	}
	stop := bind(ctx, c)
	defer stop()
	ld := ios.NewLockDownConnection(ios.NewDeviceConnectionWithConn(c))
	if _, err := ld.StartSession(pr); err != nil {
		c.Close()
		if strings.Contains(err.Error(), "InvalidHostID") {
			return nil, fmt.Errorf("%w (%v)", errWrongRecord, err)
		}
		if strings.Contains(err.Error(), "PasswordProtected") {
			return nil, fmt.Errorf("%w: %v", ErrLocked, err)
		}
		return nil, ctxErr(ctx, fmt.Errorf("lockdown session with %s at %s: %w", e.UDID, e.Addr, err))
	}
	if err := checkDeviceCert(ld.Conn(), pr); err != nil {
		c.Close()
		return nil, err
	}
	return &Session{Entry: e, pair: pr, ld: ld, conn: c, link: l}, nil
}

// checkDeviceCert compares the device's TLS certificate key with the record's
// DeviceCertificate. go-ios skips verification (InsecureSkipVerify), which over USB is
// harmless; over a network it would let any host at the advertised address pass.
func checkDeviceCert(c net.Conn, pr ios.PairRecord) error {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return fmt.Errorf("%w: the device did not switch the session to TLS", errWrongRecord)
	}
	peers := tc.ConnectionState().PeerCertificates
	blk, _ := pem.Decode(pr.DeviceCertificate)
	if len(peers) == 0 || blk == nil {
		return fmt.Errorf("%w: no device certificate to compare", errWrongRecord)
	}
	want, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return fmt.Errorf("pair record DeviceCertificate: %w", err)
	}
	got, err1 := x509.MarshalPKIXPublicKey(peers[0].PublicKey)
	exp, err2 := x509.MarshalPKIXPublicKey(want.PublicKey)
	if err1 != nil || err2 != nil || !bytes.Equal(got, exp) {
		return fmt.Errorf("%w: the device's TLS key is not the one in its pair record", errWrongRecord)
	}
	return nil
}

func enableKeepAlive(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: 15 * time.Second, Interval: 5 * time.Second, Count: 3})
	}
}

// openDirect starts a session with a linked device.
func (h *Host) openDirect(ctx context.Context, l *wifiLink) (*Session, error) {
	return h.dialSession(ctx, l.entry(), l.pair, l)
}

// connectService opens a started service port directly, with TLS when lockdown said so.
func connectService(ctx context.Context, l *wifiLink, e Entry, pr ios.PairRecord, name string, port int, ssl bool) (net.Conn, error) {
	host, _, err := net.SplitHostPort(e.Addr)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, fmt.Sprint(port)))
	if err != nil {
		return nil, ctxErr(ctx, fmt.Errorf("connect to %s at %s: %w", name, e.Addr, err))
	}
	enableKeepAlive(c)
	if c, err = l.track(c); err != nil {
		return nil, err
	}
	if !ssl {
		return c, nil
	}
	stop := bind(ctx, c)
	defer stop()
	dc := ios.NewDeviceConnectionWithConn(c)
	if err := dc.EnableSessionSsl(pr); err != nil {
		c.Close()
		return nil, ctxErr(ctx, fmt.Errorf("TLS with %s: %w", name, err))
	}
	return dc.Conn(), nil
}

// remember records that the device with Wi-Fi address mac is udid, in memory and in
// CacheFile.
func (h *Host) remember(mac, udid string) {
	if mac == "" {
		return
	}
	h.mu.Lock()
	if h.learnt[mac] == udid {
		h.mu.Unlock()
		return
	}
	h.learnt[mac] = udid
	snapshot := make(map[string]string, len(h.learnt))
	for k, v := range h.learnt {
		snapshot[k] = v
	}
	h.mu.Unlock()
	if h.cfg.CacheFile == "" {
		return
	}
	b, _ := json.MarshalIndent(map[string]any{"wifi_addresses": snapshot}, "", "  ")
	if err := os.MkdirAll(filepath.Dir(h.cfg.CacheFile), 0o700); err == nil {
		err = atomicfile.WriteFile(h.cfg.CacheFile, b, 0o600)
		if err != nil {
			h.log.Warn("wifi cache", "err", err)
		}
	}
}

func (h *Host) loadCache() {
	if h.cfg.CacheFile == "" {
		return
	}
	b, err := os.ReadFile(h.cfg.CacheFile)
	if err != nil {
		return
	}
	var f struct {
		WiFi map[string]string `json:"wifi_addresses"`
	}
	if json.Unmarshal(b, &f) != nil {
		h.log.Warn("wifi cache unreadable; starting afresh", "file", h.cfg.CacheFile)
		return
	}
	for mac, udid := range f.WiFi {
		if hw, err := net.ParseMAC(mac); err == nil && plausibleUDID(udid) {
			h.learnt[hw.String()] = udid
		}
	}
}

// probeDirect is Probe for a device found by built-in discovery: a plain lockdown
// QueryType over TCP to its address (no mux is involved).
func probeDirect(ctx context.Context, e Entry, timeout time.Duration) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", e.Addr)
	if err != nil {
		return ctxErr(ctx, fmt.Errorf("connect to lockdownd of %s at %s: %w", e.UDID, e.Addr, err))
	}
	defer c.Close()
	defer bind(ctx, c)()
	s := &Session{Entry: e, ld: ios.NewLockDownConnection(ios.NewDeviceConnectionWithConn(c)), conn: c}
	if _, err := s.request(ctx, map[string]any{"Request": "QueryType"}); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s did not answer within %s", e.UDID, timeout)
		}
		return err
	}
	return nil
}
