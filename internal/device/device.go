// Package device finds iPhones and iPads through usbmuxd and opens the services a backup
// needs: a lockdown session, notification_proxy, AFC and com.apple.mobilebackup2 (started
// with the pair record's EscrowBag). It is the only package that imports go-ios; everything
// above it sees plain types and typed errors.
//
// go-ios has no context support, so every blocking call here is bound to its ctx by closing
// the underlying connection when ctx ends. Lengths read from the wire are capped.
package device

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strings"

	"github.com/danielpaulus/go-ios/ios"
)

// Transport is how a device is connected.
type Transport string

// Transports as Snapback names them (usbmuxd says "USB" and "Network").
const (
	USB  Transport = "usb"
	WiFi Transport = "wifi"
)

func transportOf(connType string) Transport {
	if connType == "Network" {
		return WiFi
	}
	return USB
}

// Entry is one device as usbmuxd lists it. When a device is reachable over USB and Wi-Fi,
// List returns one Entry for it, preferring USB (faster, no pairing over the air).
type Entry struct {
	UDID       string      `json:"udid"`
	DeviceID   int         `json:"-"` // usbmuxd handle of the chosen transport
	Transport  Transport   `json:"transport"`
	Transports []Transport `json:"transports"` // all transports it is reachable on
	// Via says how it was found (usb, wifi-mux, wifi-direct); Addr is lockdownd's address
	// for wifi-direct.
	Via  Found  `json:"via,omitempty"`
	Addr string `json:"addr,omitempty"`
}

// Errors callers branch on.
var (
	ErrNotFound  = errors.New("device not connected")
	ErrNotPaired = errors.New("device not paired with this computer (trust needed)")
	ErrNoUsbmuxd = errors.New("usbmuxd is not running")
	ErrLocked    = errors.New("device is locked")
	ErrLockBusy  = errors.New("another sync holds the device's sync lock")
)

// SetLogger routes go-ios's internal logging to l (nil silences it). Until it is called,
// go-ios is silenced so that it cannot write into the application's log unasked.
func SetLogger(l *slog.Logger) {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	ios.SetLogger(l.With("component", "go-ios"))
}

func init() { ios.SetLogger(slog.New(slog.DiscardHandler)) }

// dialMux opens a connection to usbmuxd, bound to ctx for the dial itself.
func dialMux(ctx context.Context) (*ios.UsbMuxConnection, net.Conn, error) {
	addr := ios.GetUsbmuxdSocket()
	network, address, ok := strings.Cut(addr, "://")
	if !ok {
		return nil, nil, fmt.Errorf("usbmuxd address %q", addr)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, network, address)
	if err != nil {
		return nil, nil, fmt.Errorf("%w (%s): %w", ErrNoUsbmuxd, address, err)
	}
	return ios.NewUsbMuxConnection(ios.NewDeviceConnectionWithConn(c)), c, nil
}

// bind closes c when ctx ends; call the returned stop when the guarded work is done.
func bind(ctx context.Context, c net.Conn) func() bool {
	return context.AfterFunc(ctx, func() { c.Close() })
}

// List returns the connected devices, one Entry per UDID, sorted by UDID.
func List(ctx context.Context) ([]Entry, error) {
	mux, c, err := dialMux(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	defer bind(ctx, c)()
	list, err := mux.ListDevices()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("list devices: %w", err)
	}
	return merge(list.DeviceList), nil
}

// merge folds usbmuxd entries (one per transport) into one Entry per UDID, USB first.
func merge(entries []ios.DeviceEntry) []Entry {
	by := map[string]*Entry{}
	for _, e := range entries {
		udid := CanonicalUDID(e.Properties.SerialNumber)
		if udid == "" {
			continue
		}
		t := transportOf(e.Properties.ConnectionType)
		cur, ok := by[udid]
		if !ok {
			by[udid] = &Entry{UDID: udid, DeviceID: e.DeviceID, Transport: t, Transports: []Transport{t}}
			continue
		}
		if !contains(cur.Transports, t) {
			cur.Transports = append(cur.Transports, t)
		}
		if t == USB && cur.Transport != USB {
			cur.Transport, cur.DeviceID = USB, e.DeviceID
		}
	}
	out := make([]Entry, 0, len(by))
	for _, e := range by {
		e.Via = FoundUSB
		if e.Transport == WiFi {
			e.Via = FoundWiFiMux
		}
		sort.Slice(e.Transports, func(i, j int) bool { return e.Transports[i] < e.Transports[j] })
		out = append(out, *e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UDID < out[j].UDID })
	return out
}

func contains(ts []Transport, t Transport) bool {
	for _, x := range ts {
		if x == t {
			return true
		}
	}
	return false
}

// Find returns the entry for udid, or the only connected device when udid is empty.
func Find(ctx context.Context, udid string) (Entry, error) {
	list, err := List(ctx)
	if err != nil {
		return Entry{}, err
	}
	if udid == "" {
		switch len(list) {
		case 0:
			return Entry{}, ErrNotFound
		case 1:
			return list[0], nil
		default:
			ids := make([]string, len(list))
			for i, e := range list {
				ids[i] = e.UDID
			}
			return Entry{}, fmt.Errorf("%d devices connected (%s): choose one with --udid", len(list), strings.Join(ids, ", "))
		}
	}
	for _, e := range list {
		if strings.EqualFold(e.UDID, udid) {
			return e, nil
		}
	}
	return Entry{}, fmt.Errorf("%w: %s", ErrNotFound, udid)
}

// EventKind says whether a device came or went.
type EventKind int

// Hotplug event kinds.
const (
	Attached EventKind = iota
	Detached
)

// String names the kind.
func (k EventKind) String() string {
	if k == Attached {
		return "attached"
	}
	return "detached"
}

// Event is one hotplug event from usbmuxd. For Detached only DeviceID and (when it was seen
// attached on this watch) UDID and Transport are known.
type Event struct {
	Kind      EventKind
	UDID      string
	DeviceID  int
	Transport Transport
	Via       Found  // how the device was found (Host.Watch); "" from Watch
	Reason    string // why a device went (Host.Watch), e.g. the heartbeat failing
}

// Watch subscribes to usbmuxd hotplug events (Listen; no polling). usbmuxd first reports
// every present device as Attached. The channel is closed when ctx ends or the usbmuxd
// connection breaks; the error, if any, is then available from the returned function.
// The reader goroutine is owned by Watch and stops with ctx.
func Watch(ctx context.Context) (<-chan Event, func() error, error) {
	mux, c, err := dialMux(ctx)
	if err != nil {
		return nil, nil, err
	}
	stop := bind(ctx, c)
	recv, err := mux.Listen()
	if err != nil {
		stop()
		c.Close()
		return nil, nil, fmt.Errorf("usbmuxd listen: %w", err)
	}
	ch := make(chan Event, 16)
	var werr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(ch)
		defer c.Close()
		defer stop()
		known := map[int]Event{}
		for {
			msg, err := recv()
			if err != nil {
				if ctx.Err() == nil {
					werr = fmt.Errorf("usbmuxd listen: %w", err)
				}
				return
			}
			var ev Event
			switch {
			case msg.DeviceAttached():
				ev = Event{Kind: Attached, UDID: CanonicalUDID(msg.Properties.SerialNumber), DeviceID: msg.DeviceID,
					Transport: transportOf(msg.Properties.ConnectionType)}
				known[msg.DeviceID] = ev
			case msg.DeviceDetached():
				ev = known[msg.DeviceID]
				ev.Kind, ev.DeviceID = Detached, msg.DeviceID
				delete(known, msg.DeviceID)
			default:
				continue // Paired and others
			}
			select {
			case ch <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch, func() error { <-done; return werr }, nil
}
