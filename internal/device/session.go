package device

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/danielpaulus/go-ios/ios"

	"snapback/internal/plistio"
)

// maxLockdownFrame caps a lockdown/notification_proxy reply. Real ones are a few KiB; the
// all-values dictionary stays well under 1 MiB.
const maxLockdownFrame = 4 << 20

const label = "snapback"

// Session is an open lockdown session with one device. Methods are not safe for concurrent
// use; the connections they return are independent.
type Session struct {
	Entry Entry
	pair  ios.PairRecord
	ld    *ios.LockDownConnection
	conn  net.Conn
	link  *wifiLink // built-in Wi-Fi only: its loss closes every connection of the session
}

// Open starts a lockdown session (TLS) with the device udid ("" = the only one connected).
func Open(ctx context.Context, udid string) (*Session, error) {
	e, err := Find(ctx, udid)
	if err != nil {
		return nil, err
	}
	return OpenEntry(ctx, e)
}

// OpenEntry starts a lockdown session with a listed device.
func OpenEntry(ctx context.Context, e Entry) (*Session, error) {
	mux, c, err := dialMux(ctx)
	if err != nil {
		return nil, err
	}
	stop := bind(ctx, c)
	defer stop()
	fail := func(err error) (*Session, error) {
		c.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	pr, err := mux.ReadPair(e.UDID)
	if err != nil {
		return fail(fmt.Errorf("%w: %v", ErrNotPaired, err))
	}
	if len(pr.HostCertificate) == 0 || pr.HostID == "" {
		return fail(fmt.Errorf("%w: pair record is incomplete", ErrNotPaired))
	}
	ld, err := mux.ConnectLockdown(e.DeviceID)
	if err != nil {
		return fail(fmt.Errorf("connect to lockdownd of %s: %w", e.UDID, err))
	}
	if _, err := ld.StartSession(pr); err != nil {
		if strings.Contains(err.Error(), "InvalidHostID") || strings.Contains(err.Error(), "PairingDialog") {
			return fail(fmt.Errorf("%w: %v", ErrNotPaired, err))
		}
		if strings.Contains(err.Error(), "PasswordProtected") {
			return fail(fmt.Errorf("%w: %v", ErrLocked, err))
		}
		return fail(fmt.Errorf("lockdown session with %s: %w", e.UDID, err))
	}
	return &Session{Entry: e, pair: pr, ld: ld, conn: c}, nil
}

// Close stops the session and closes the connection.
func (s *Session) Close() error {
	_ = s.ld.Send(map[string]any{"Label": label, "Request": "StopSession"})
	return s.conn.Close()
}

// HasEscrowBag reports whether the pair record carries the bag mobilebackup2 needs to read
// protected data while the device is locked.
func (s *Session) HasEscrowBag() bool { return len(s.pair.EscrowBag) > 0 }

// request sends one lockdown request and decodes the reply, turning a device Error into a
// Go error (go-ios's GetValue drops it).
func (s *Session) request(ctx context.Context, req map[string]any) (map[string]any, error) {
	defer bind(ctx, s.conn)()
	req["Label"] = label
	if err := s.ld.Send(req); err != nil {
		return nil, ctxErr(ctx, err)
	}
	b, err := s.ld.ReadMessage()
	if err != nil {
		return nil, ctxErr(ctx, err)
	}
	if len(b) > maxLockdownFrame {
		return nil, fmt.Errorf("lockdown reply of %d bytes", len(b))
	}
	var resp map[string]any
	if err := plistio.Unmarshal(b, &resp); err != nil {
		return nil, fmt.Errorf("lockdown reply: %w", err)
	}
	if e, ok := resp["Error"].(string); ok && e != "" {
		return resp, &LockdownError{Request: fmt.Sprint(req["Request"]), Code: e}
	}
	return resp, nil
}

// LockdownError is an Error string from lockdownd.
type LockdownError struct{ Request, Code string }

func (e *LockdownError) Error() string { return "lockdown " + e.Request + ": " + e.Code }

// Value reads one lockdown value (domain and key may be empty).
func (s *Session) Value(ctx context.Context, domain, key string) (any, error) {
	req := map[string]any{"Request": "GetValue"}
	if domain != "" {
		req["Domain"] = domain
	}
	if key != "" {
		req["Key"] = key
	}
	resp, err := s.request(ctx, req)
	if err != nil {
		return nil, err
	}
	return resp["Value"], nil
}

// Info is what Snapback shows about a device and writes into Info.plist.
type Info struct {
	UDID           string    `json:"udid"`
	Name           string    `json:"name"`
	ProductType    string    `json:"product_type"`
	ProductVersion string    `json:"ios_version"`
	BuildVersion   string    `json:"build_version"`
	SerialNumber   string    `json:"serial_number"`
	PhoneNumber    string    `json:"phone_number,omitempty"`
	IMEI           string    `json:"imei,omitempty"`
	ICCID          string    `json:"iccid,omitempty"`
	MEID           string    `json:"meid,omitempty"`
	DeviceClass    string    `json:"device_class,omitempty"`
	BatteryLevel   int       `json:"battery_level"` // percent; -1 unknown
	Charging       bool      `json:"charging"`
	WillEncrypt    bool      `json:"will_encrypt"`
	Transport      Transport `json:"transport"`
	// DataUsed and DiskCapacity (domain com.apple.disk_usage; 0 = unknown) bound what a
	// backup can write.
	DataUsed     int64 `json:"data_used,omitempty"`
	DiskCapacity int64 `json:"disk_capacity,omitempty"`
	// ITunesSettings (domain com.apple.iTunes) and MinITunesVersion feed Info.plist.
	ITunesSettings   map[string]any `json:"-"`
	MinITunesVersion string         `json:"-"`
}

// Info reads the device's identity, battery and backup settings.
func (s *Session) Info(ctx context.Context) (Info, error) {
	info := Info{UDID: s.Entry.UDID, Transport: s.Entry.Transport, BatteryLevel: -1}
	all, err := s.Value(ctx, "", "")
	if err != nil {
		return info, err
	}
	m, _ := all.(map[string]any)
	get := func(k string) string { v, _ := m[k].(string); return v }
	info.Name = get("DeviceName")
	info.ProductType = get("ProductType")
	info.ProductVersion = get("ProductVersion")
	info.BuildVersion = get("BuildVersion")
	info.SerialNumber = get("SerialNumber")
	info.PhoneNumber = get("PhoneNumber")
	info.IMEI = get("InternationalMobileEquipmentIdentity")
	info.ICCID = get("IntegratedCircuitCardIdentity")
	info.MEID = get("MobileEquipmentIdentifier")
	info.DeviceClass = get("DeviceClass")
	if u := get("UniqueDeviceID"); u != "" {
		info.UDID = u
	}
	// Optional values: a device may refuse any of them; the backup does not depend on them.
	if v, err := s.Value(ctx, "com.apple.mobile.battery", ""); err == nil {
		if b, ok := v.(map[string]any); ok {
			if n, ok := plistio.Int(b["BatteryCurrentCapacity"]); ok {
				info.BatteryLevel = int(n)
			}
			info.Charging, _ = b["BatteryIsCharging"].(bool)
		}
	} else if ctx.Err() != nil {
		return info, ctx.Err()
	}
	if v, err := s.Value(ctx, "com.apple.mobile.backup", "WillEncrypt"); err == nil {
		info.WillEncrypt, _ = v.(bool)
	} else if ctx.Err() != nil {
		return info, ctx.Err()
	}
	if v, err := s.Value(ctx, "com.apple.disk_usage", ""); err == nil {
		if m, ok := v.(map[string]any); ok {
			total, _ := plistio.Int(m["TotalDataCapacity"])
			avail, _ := plistio.Int(m["TotalDataAvailable"])
			if total > 0 && avail >= 0 && avail <= total {
				info.DataUsed = total - avail
			}
			info.DiskCapacity, _ = plistio.Int(m["TotalDiskCapacity"])
		}
	}
	if v, err := s.Value(ctx, "com.apple.iTunes", ""); err == nil {
		info.ITunesSettings, _ = v.(map[string]any)
	}
	if v, err := s.Value(ctx, "com.apple.mobile.iTunes", "MinITunesVersion"); err == nil {
		info.MinITunesVersion, _ = v.(string)
	}
	return info, ctx.Err()
}

// Service names used around a backup.
const (
	ServiceBackup       = "com.apple.mobilebackup2"
	ServiceNotification = "com.apple.mobile.notification_proxy"
	ServiceAFC          = "com.apple.afc"
)

// StartService starts a service and connects to it. With escrow the pair record's EscrowBag
// goes with the request (go-ios cannot send it), which mobilebackup2 needs to back up
// protected data while the device is locked.
func (s *Session) StartService(ctx context.Context, name string, escrow bool) (net.Conn, error) {
	req := map[string]any{"Request": "StartService", "Service": name}
	if escrow {
		if !s.HasEscrowBag() {
			return nil, fmt.Errorf("%w: the pair record has no EscrowBag; pair the device again", ErrNotPaired)
		}
		req["EscrowBag"] = s.pair.EscrowBag
	}
	resp, err := s.request(ctx, req)
	if err != nil {
		var le *LockdownError
		if errors.As(err, &le) && (le.Code == "PasswordProtected" || le.Code == "EscrowLocked") {
			return nil, fmt.Errorf("start %s: %w (%s)", name, ErrLocked, le.Code)
		}
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	port, ok := plistio.Int(resp["Port"])
	if !ok || port <= 0 || port > 65535 {
		return nil, fmt.Errorf("start %s: reply without a valid port", name)
	}
	ssl, _ := resp["EnableServiceSSL"].(bool)
	if s.Entry.Via == FoundWiFiDirect {
		return connectService(ctx, s.link, s.Entry, s.pair, name, int(port), ssl)
	}

	mux, c, err := dialMux(ctx)
	if err != nil {
		return nil, err
	}
	stop := bind(ctx, c)
	defer stop()
	if err := mux.Connect(s.Entry.DeviceID, uint16(port)); err != nil {
		c.Close()
		return nil, ctxErr(ctx, fmt.Errorf("connect to %s: %w", name, err))
	}
	dc := mux.ReleaseDeviceConnection()
	if ssl {
		if err := dc.EnableSessionSsl(s.pair); err != nil {
			c.Close()
			return nil, ctxErr(ctx, fmt.Errorf("TLS with %s: %w", name, err))
		}
	}
	return dc.Conn(), nil
}

func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}
