package devicesim

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"snapback/internal/lockdown"
	"snapback/internal/plistio"
)

// lockdownMaxFrame bounds one lockdown request. Real requests are under 1 KiB; a Pair
// request with certificates is a few KiB.
const lockdownMaxFrame = 256 << 10

// Notification names the simulator itself knows about.
const (
	NotifyPasscodePresented = "com.apple.LocalAuthentication.ui.presented"
	NotifyPasscodeDismissed = "com.apple.LocalAuthentication.ui.dismissed"
)

// Lockdown domains served beyond the main one.
const (
	domainBackup   = "com.apple.mobile.backup"
	domainWireless = "com.apple.mobile.wireless_lockdown"
	domainBattery  = "com.apple.mobile.battery"
	domainITunes   = "com.apple.iTunes"
	domainMITunes  = "com.apple.mobile.iTunes"
)

// publicKeys are readable without a session: idevicebackup2's handshake asks for
// ProductVersion before StartSession; `ideviceinfo -s` (GetValue with no key, no session)
// prints the whole public subset, appium-ios-device's getDeviceInfo reads it too; hosts that
// pair read DevicePublicKey and WiFiAddress before any session exists (go-ios ios/pair.go,
// libimobiledevice lockdownd_do_pair). A real device answers GetValue without a key and
// without a session with exactly these values, not SessionInactive (real-devices.md row 11).
var publicKeys = map[string]bool{
	"ProductVersion": true, "BuildVersion": true, "ProductType": true, "DeviceClass": true,
	"UniqueDeviceID": true, "DeviceName": true, "ProductName": true, "HardwareModel": true,
	"SerialNumber": true, "DevicePublicKey": true, "ProtocolVersion": true, "CPUArchitecture": true,
	"WiFiAddress": true, "DeviceColor": true, "UniqueChipID": true, "PasswordProtected": true,
}

// decodeLockdownRequest parses one lockdown request frame (XML or binary plist). It
// returns the Request name and the whole dict.
func decodeLockdownRequest(frame []byte) (string, map[string]any, error) {
	var m map[string]any
	if err := plistio.Unmarshal(frame, &m); err != nil {
		return "", nil, fmt.Errorf("lockdown: %w", err)
	}
	req, ok := m["Request"].(string)
	if !ok || req == "" {
		return "", m, errors.New("lockdown: request without Request")
	}
	return req, m, nil
}

// recordConn is the raw socket under a lockdown session. Once TLS is on it hands the TLS
// layer at most one record at a time, so that after the client's close_notify nothing
// of the plain-text traffic that follows has been swallowed into TLS buffers.
type recordConn struct {
	net.Conn
	records bool
	left    int    // bytes left in the current record
	hdr     []byte // partially read record header
	peeked  []byte
}

func (r *recordConn) Read(p []byte) (int, error) {
	if len(r.peeked) > 0 {
		n := copy(p, r.peeked)
		r.peeked = r.peeked[n:]
		r.trackRecord(p[:n])
		return n, nil
	}
	if !r.records || len(p) == 0 {
		return r.Conn.Read(p)
	}
	if r.left == 0 {
		// Read the 5-byte header of the next record by itself.
		need := 5 - len(r.hdr)
		if len(p) > need {
			p = p[:need]
		}
	} else if len(p) > r.left {
		p = p[:r.left]
	}
	n, err := r.Conn.Read(p)
	r.trackRecord(p[:n])
	return n, err
}

func (r *recordConn) trackRecord(b []byte) {
	if !r.records {
		return
	}
	for len(b) > 0 {
		if r.left > 0 {
			k := min(r.left, len(b))
			r.left -= k
			b = b[k:]
			continue
		}
		k := min(5-len(r.hdr), len(b))
		r.hdr = append(r.hdr, b[:k]...)
		b = b[k:]
		if len(r.hdr) == 5 {
			r.left = int(r.hdr[3])<<8 | int(r.hdr[4])
			r.hdr = r.hdr[:0]
		}
	}
}

// peek returns the next byte without consuming it.
func (r *recordConn) peek() (byte, error) {
	if len(r.peeked) > 0 {
		return r.peeked[0], nil
	}
	var b [1]byte
	if _, err := io.ReadFull(r.Conn, b[:]); err != nil {
		return 0, err
	}
	r.peeked = append(r.peeked[:0], b[0])
	return b[0], nil
}

// lockdownConn is the state of one lockdownd connection.
type lockdownConn struct {
	d       *Device
	raw     *recordConn
	rw      io.ReadWriter // raw or the TLS conn
	tls     *tls.Conn
	session string
	host    string // HostID of the session
}

// serveLockdown runs lockdownd on one connection.
func (d *Device) serveLockdown(ctx context.Context, c net.Conn) {
	d.counters.lockdown.Add(1)
	lc := &lockdownConn{d: d, raw: &recordConn{Conn: c}}
	lc.rw = lc.raw
	if err := lc.serve(ctx); err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		d.sim.log.Debug("lockdown ended", "udid", d.UDID(), "err", err)
	}
}

func (lc *lockdownConn) serve(ctx context.Context) error {
	for {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		frame, err := plistio.ReadFrame(lc.rw, lockdownMaxFrame)
		if err != nil {
			if lc.tls != nil && lc.session == "" && errors.Is(err, io.EOF) {
				// close_notify after StopSession: carry on in plain text if the client does.
				lc.tls, lc.rw, lc.raw.records = nil, lc.raw, false
				continue
			}
			return err
		}
		name, req, err := decodeLockdownRequest(frame)
		if err != nil {
			return err
		}
		lc.d.sim.log.Debug("lockdown request", "udid", lc.d.UDID(), "request", name, "key", req["Key"], "domain", req["Domain"])
		resp := lc.handle(name, req)
		if err := plistio.WritePlist(lc.rw, resp, plistio.XML); err != nil {
			return fmt.Errorf("lockdown: write %s reply: %w", name, err)
		}
		switch name {
		case "StartSession":
			if _, failed := resp["Error"]; failed {
				continue
			}
			if err := lc.startTLS(ctx); err != nil {
				return err
			}
		case "StopSession":
			if _, failed := resp["Error"]; failed || lc.tls == nil {
				continue
			}
			// The client now sends close_notify (libimobiledevice) or just closes (go-ios).
			// Plain text may follow; a TLS record starts with content type 0x14-0x17,
			// a plain frame with the high byte of its length (0).
			b, err := lc.raw.peek()
			if err != nil {
				return err
			}
			if b == 0 {
				lc.tls, lc.rw, lc.raw.records = nil, lc.raw, false
			}
		case "Goodbye":
			return nil
		}
	}
}

func (lc *lockdownConn) startTLS(ctx context.Context) error {
	lc.raw.records = true
	tc := tls.Server(lc.raw, lc.d.tlsCfg)
	hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		return fmt.Errorf("lockdown: session TLS handshake: %w", err)
	}
	lc.tls, lc.rw = tc, tc
	lc.d.counters.sessions.Add(1)
	return nil
}

// verifyHost accepts the TLS client certificate of a paired host: the pair record's
// RootCertificate (OpenSSL-built libimobiledevice) or HostCertificate (go-ios,
// pymobiledevice3), or anything the root signed.
func (d *Device) verifyHost(rawCerts [][]byte, _ [][]*x509.Certificate) error {
	if len(rawCerts) == 0 {
		return errors.New("devicesim: host presented no certificate")
	}
	leaf := rawCerts[0]
	trusted := d.trustedCerts()
	for _, p := range trusted {
		if blk, _ := pem.Decode(p); blk != nil && bytes.Equal(blk.Bytes, leaf) {
			return nil
		}
	}
	cert, err := x509.ParseCertificate(leaf)
	if err != nil {
		return fmt.Errorf("devicesim: host certificate: %w", err)
	}
	// trusted holds root, host pairs: anything a trusted root signed is accepted.
	for i := 0; i < len(trusted); i += 2 {
		blk, _ := pem.Decode(trusted[i])
		if blk == nil {
			continue
		}
		root, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			continue
		}
		if cert.CheckSignatureFrom(root) == nil {
			return nil
		}
	}
	return errors.New("devicesim: host certificate not issued by a trusted root")
}

func lockdownError(req map[string]any, name, errName string) map[string]any {
	resp := map[string]any{"Request": name, "Error": errName}
	for _, k := range []string{"Key", "Domain", "Service"} {
		if v, ok := req[k]; ok {
			resp[k] = v
		}
	}
	return resp
}

func (lc *lockdownConn) handle(name string, req map[string]any) map[string]any {
	d := lc.d
	switch name {
	case "QueryType":
		return map[string]any{"Request": name, "Type": "com.apple.mobile.lockdown"}
	case "GetValue":
		key, _ := req["Key"].(string)
		domain, _ := req["Domain"].(string)
		if lc.session == "" && (domain != "" || (key != "" && !publicKeys[key])) {
			return lockdownError(req, name, "SessionInactive")
		}
		v, errName := d.value(domain, key)
		if lc.session == "" && key == "" {
			all, _ := v.(map[string]any)
			pub := map[string]any{}
			for k, x := range all {
				if publicKeys[k] && k != "DevicePublicKey" {
					pub[k] = x
				}
			}
			v = pub
		}
		if errName != "" {
			return lockdownError(req, name, errName)
		}
		resp := map[string]any{"Request": name, "Value": v}
		if key != "" {
			resp["Key"] = key
		}
		if domain != "" {
			resp["Domain"] = domain
		}
		return resp
	case "SetValue":
		if lc.session == "" {
			return lockdownError(req, name, "SessionInactive")
		}
		key, _ := req["Key"].(string)
		domain, _ := req["Domain"].(string)
		if domain == domainWireless && key == "EnableWifiConnections" {
			b, ok := req["Value"].(bool)
			if !ok {
				return lockdownError(req, name, "InvalidValue")
			}
			d.mu.Lock()
			d.wifiLock = b
			d.mu.Unlock()
			return map[string]any{"Request": name, "Domain": domain, "Key": key}
		}
		return lockdownError(req, name, "SetProhibited")
	case "StartSession":
		if lc.session != "" {
			return lockdownError(req, name, "SessionActive")
		}
		host, ok := req["HostID"].(string)
		if !ok || host == "" {
			return lockdownError(req, name, "MissingHostID")
		}
		if _, ok := d.trustedHost(host); !ok {
			return lockdownError(req, name, "InvalidHostID")
		}
		lc.session, lc.host = lockdown.NewUUID(), host
		return map[string]any{"Request": name, "SessionID": lc.session, "EnableSessionSSL": true}
	case "StopSession":
		if lc.session == "" {
			return lockdownError(req, name, "SessionInactive")
		}
		if id, _ := req["SessionID"].(string); id != lc.session {
			return lockdownError(req, name, "InvalidSessionID")
		}
		lc.session = ""
		return map[string]any{"Request": name}
	case "StartService":
		if lc.session == "" {
			return lockdownError(req, name, "SessionInactive")
		}
		svc, _ := req["Service"].(string)
		if svc == "" {
			return lockdownError(req, name, "MissingService")
		}
		serve, errName := d.serviceHandler(svc, req, lc.host)
		if errName != "" {
			return lockdownError(req, name, errName)
		}
		port := d.startService(svc, serve)
		d.counters.started.Add(1)
		return map[string]any{"Request": name, "Service": svc, "Port": int(port), "EnableServiceSSL": true}
	case "Goodbye":
		return map[string]any{"Request": name, "Result": "Success"}
	case "Pair", "ValidatePair", "Unpair":
		return d.handlePairing(name, req, lc.host)
	default:
		return lockdownError(req, name, "InvalidRequest")
	}
}

// serviceHandler decides whether svc may start and returns its connection handler.
func (d *Device) serviceHandler(svc string, req map[string]any, host string) (func(context.Context, net.Conn), string) {
	switch svc {
	case "com.apple.mobile.notification_proxy":
		return d.serveService(svc, func(ctx context.Context, rw io.ReadWriter) error {
			d.counters.np.Add(1)
			return d.np.serve(ctx, d, rw)
		}), ""
	case "com.apple.afc":
		return d.serveService(svc, func(ctx context.Context, rw io.ReadWriter) error {
			d.counters.afc.Add(1)
			return d.fs.serve(ctx, rw)
		}), ""
	case serviceInstProxy:
		if d.cfg.NoInstallationProxy {
			return nil, "InvalidService"
		}
		return d.serveService(svc, d.serveInstProxy), ""
	case serviceSpringBoard:
		return d.serveService(svc, d.serveSpringBoard), ""
	case serviceHeartbeat:
		return d.serveService(svc, d.serveHeartbeat), ""
	case "com.apple.mobilebackup2":
		if d.cfg.Backup == nil {
			return nil, "ServiceProhibited"
		}
		bag, present := req["EscrowBag"].([]byte)
		th, _ := d.trustedHost(host)
		if present && !bytes.Equal(bag, th.EscrowBag) {
			return nil, "EscrowLocked"
		}
		if !present && !d.cfg.AllowMissingEscrowBag {
			return nil, "EscrowLocked"
		}
		d.mu.Lock()
		drop := d.dropBackup
		d.mu.Unlock()
		if plan := d.cfg.DropLinkPlan; plan != nil {
			if n := plan(d.counters.backupStarts.Add(1)); n > 0 && (drop <= 0 || n < drop) {
				drop = n
			}
		}
		inner := d.serveService(svc, func(ctx context.Context, rw io.ReadWriter) error {
			d.counters.backup.Add(1)
			return d.cfg.Backup.Serve(ctx, rw, d)
		})
		if drop <= 0 {
			return inner, ""
		}
		return func(ctx context.Context, c net.Conn) {
			inner(ctx, &countingConn{Conn: c, limit: drop, onDrop: func() { d.counters.backupDrops.Add(1) }})
		}, ""
	default:
		return nil, "InvalidService"
	}
}

// value answers GetValue for a domain and key ("" = whole dict). The second result is a
// lockdown error name.
func (d *Device) value(domain, key string) (any, string) {
	var dict map[string]any
	switch domain {
	case "":
		dict = d.mainValues()
	case domainBackup:
		dict = map[string]any{"WillEncrypt": d.willEncrypt()}
	case domainWireless:
		d.mu.Lock()
		dict = map[string]any{"EnableWifiConnections": d.wifiLock}
		d.mu.Unlock()
	case domainBattery:
		dict = map[string]any{"BatteryCurrentCapacity": d.cfg.BatteryLevel, "BatteryIsCharging": d.cfg.Charging,
			"ExternalChargeCapable": d.cfg.Charging, "ExternalConnected": d.cfg.Charging, "FullyCharged": d.cfg.BatteryLevel >= 100}
	case domainITunes:
		dict = map[string]any{}
	case domainDiskUsage:
		dict = d.diskUsage()
	case domainMITunes:
		dict = map[string]any{"MinITunesVersion": "10.0.1", "MinMacOSVersion": "10.14.4"}
	default:
		return nil, "MissingValue"
	}
	if key == "" {
		return dict, ""
	}
	v, ok := dict[key]
	if !ok {
		return nil, "MissingValue"
	}
	return v, ""
}

func (d *Device) willEncrypt() bool {
	if we, ok := d.cfg.Backup.(interface{ WillEncrypt() bool }); ok {
		return we.WillEncrypt()
	}
	return false
}

// mainValues is the main lockdown domain. Types match what go-ios's AllValuesType decodes.
func (d *Device) mainValues() map[string]any {
	id := d.cfg.Identity
	return map[string]any{
		"ActivationState":                      "Activated",
		"BluetoothAddress":                     id.WiFiAddress[:len(id.WiFiAddress)-1] + "1",
		"BuildVersion":                         id.BuildVersion,
		"CPUArchitecture":                      "arm64e",
		"DeviceClass":                          "iPhone",
		"DeviceColor":                          "1",
		"DeviceName":                           id.DeviceName,
		"DevicePublicKey":                      d.pairing.devicePublicKeyPEM(),
		"HardwareModel":                        id.HardwareModel,
		"HostAttached":                         true,
		"IntegratedCircuitCardIdentity":        id.ICCID,
		"InternationalMobileEquipmentIdentity": id.IMEI,
		"PasswordProtected":                    d.cfg.PasswordProtected,
		"PhoneNumber":                          id.PhoneNumber,
		"ProductName":                          "iPhone OS",
		"ProductType":                          id.ProductType,
		"ProductVersion":                       id.ProductVersion,
		"ProtocolVersion":                      "2",
		"SerialNumber":                         id.SerialNumber,
		"TimeZone":                             "Europe/Berlin",
		"TrustedHostAttached":                  true,
		"UniqueChipID":                         uint64(0x1A2B3C4D5E6F),
		"UniqueDeviceID":                       id.UDID,
		"WiFiAddress":                          id.WiFiAddress,
	}
}
