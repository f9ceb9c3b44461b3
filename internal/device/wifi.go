package device

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"
)

// Wi-Fi without a network-capable mux. Debian's usbmuxd lists no network devices, netmuxd
// and usbmuxd2 are extra daemons that drop heartbeats (netmuxd #14) and, since iOS 26.4,
// miss devices whose private Wi-Fi address is not the pair record's WiFiMACAddress
// (netmuxd #56, #57). A Host therefore browses mDNS itself, proves which paired device an
// advert is, talks lockdown and services over TCP (TLS as lockdown says) and keeps the
// link alive with the heartbeat service, behind the same Session the USB path returns.

// WiFiDiscovery is the wifi_discovery setting.
type WiFiDiscovery string

// Wi-Fi discovery modes.
const (
	// WiFiAuto uses the mux's network devices and discovers the others itself.
	WiFiAuto WiFiDiscovery = "auto"
	// WiFiBuiltin ignores the mux's network devices and discovers all Wi-Fi devices itself.
	WiFiBuiltin WiFiDiscovery = "builtin"
	// WiFiMux uses only the network devices the mux lists.
	WiFiMux WiFiDiscovery = "mux"
	// WiFiOff backs up over USB only.
	WiFiOff WiFiDiscovery = "off"
)

// ParseWiFiDiscovery reads a wifi_discovery value ("" is auto).
func ParseWiFiDiscovery(s string) (WiFiDiscovery, error) {
	switch m := WiFiDiscovery(strings.ToLower(strings.TrimSpace(s))); m {
	case "":
		return WiFiAuto, nil
	case WiFiAuto, WiFiBuiltin, WiFiMux, WiFiOff:
		return m, nil
	}
	return "", fmt.Errorf("%q is not a Wi-Fi discovery mode (use auto, builtin, mux or off)", s)
}

// usesMux reports whether Network entries of the mux count.
func (m WiFiDiscovery) usesMux() bool { return m == WiFiAuto || m == WiFiMux || m == "" }

// browses reports whether the Host discovers Wi-Fi devices itself.
func (m WiFiDiscovery) browses() bool { return m == WiFiAuto || m == WiFiBuiltin || m == "" }

// Found says how a device was found.
type Found string

// How devices are found.
const (
	FoundUSB        Found = "usb"
	FoundWiFiMux    Found = "wifi-mux"
	FoundWiFiDirect Found = "wifi-direct"
)

// HostConfig configures a Host. The zero value is auto discovery with the platform's
// pair-record folder.
type HostConfig struct {
	WiFi WiFiDiscovery
	// PairRecordDir holds <UDID>.plist pair records ("" = DefaultPairRecordDir()); records
	// are also read through the mux when it is running.
	PairRecordDir string
	// CacheFile, if set, keeps what identification learnt (Wi-Fi address → UDID) across
	// runs, so a device with a private address is recognised without trying records.
	CacheFile string
	// Interface is the network interface to browse on ("" = the system's multicast route).
	Interface string
	// BrowseWait bounds how long Find waits for a device's advert (default 3 s).
	BrowseWait time.Duration
	// BrowseEvery is the query period of Watch (default 5 s).
	BrowseEvery time.Duration
	// HeartbeatGrace is added to the device's Marco interval before the link counts as
	// lost (default 5 s).
	HeartbeatGrace time.Duration
	Logger         *slog.Logger
}

// Host finds devices through the mux and, as configured, by its own Wi-Fi discovery. Its
// methods are safe for concurrent use. A nil *Host behaves as the package functions (mux
// only). Close stops its heartbeats and browsing.
type Host struct {
	cfg HostConfig
	log *slog.Logger

	ctx    context.Context // lifetime of heartbeats and browsing; ended by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	links    map[string]*wifiLink // UDID → live direct link
	learnt   map[string]string    // Wi-Fi address → UDID
	watchers map[chan Event]struct{}
	quiet    map[string]time.Time // advert (instance + address) → not adopted again before
	dials    int                  // lockdown connections made by discovery (identification, sessions)
}

// NewHost returns a Host; call Close when done.
func NewHost(cfg HostConfig) *Host {
	if cfg.WiFi == "" {
		cfg.WiFi = WiFiAuto
	}
	if cfg.PairRecordDir == "" {
		cfg.PairRecordDir = DefaultPairRecordDir()
	}
	if cfg.BrowseWait <= 0 {
		cfg.BrowseWait = 3 * time.Second
	}
	if cfg.BrowseEvery <= 0 {
		cfg.BrowseEvery = 5 * time.Second
	}
	if cfg.HeartbeatGrace <= 0 {
		cfg.HeartbeatGrace = 5 * time.Second
	}
	l := cfg.Logger
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	h := &Host{cfg: cfg, log: l, links: map[string]*wifiLink{}, learnt: map[string]string{},
		watchers: map[chan Event]struct{}{}, quiet: map[string]time.Time{}}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	h.loadCache()
	return h
}

// Mode is the Host's Wi-Fi discovery mode.
func (h *Host) Mode() WiFiDiscovery {
	if h == nil {
		return WiFiMux
	}
	return h.cfg.WiFi
}

// Close stops heartbeats and browsing and waits for them.
func (h *Host) Close() error {
	if h == nil {
		return nil
	}
	h.cancel()
	h.mu.Lock()
	for _, l := range h.links {
		l.close()
	}
	h.mu.Unlock()
	h.wg.Wait()
	return nil
}

// DirectDials counts the lockdown connections the Host's own Wi-Fi discovery has made.
func (h *Host) DirectDials() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.dials
}

// muxEntries lists the mux's devices as this Host's mode sees them. A mux that is not
// running is no error when the Host browses itself.
func (h *Host) muxEntries(ctx context.Context) ([]Entry, error) {
	list, err := List(ctx)
	if err != nil {
		if h.cfg.WiFi.browses() && errors.Is(err, ErrNoUsbmuxd) {
			return nil, nil
		}
		return nil, err
	}
	if h.cfg.WiFi.usesMux() {
		return list, nil
	}
	out := list[:0]
	for _, e := range list {
		if !contains(e.Transports, USB) {
			continue
		}
		e.Transport, e.Transports, e.Via = USB, []Transport{USB}, FoundUSB
		out = append(out, e)
	}
	return out, nil
}

// List returns the devices reachable now: the mux's (as the mode allows) and, when the
// Host browses, those whose adverts are heard within BrowseWait and that prove to be paired
// with this computer. A device on the mux is never also connected directly.
func (h *Host) List(ctx context.Context) ([]Entry, error) {
	if h == nil {
		return List(ctx)
	}
	list, err := h.muxEntries(ctx)
	if err != nil || !h.cfg.WiFi.browses() {
		return list, err
	}
	onMux := map[string]bool{}
	for _, e := range list {
		onMux[strings.ToUpper(e.UDID)] = true
	}
	direct, err := h.discover(ctx, "", onMux)
	if err != nil {
		return list, err
	}
	for _, l := range direct {
		list = append(list, l.entry())
	}
	sort.Slice(list, func(i, j int) bool { return list[i].UDID < list[j].UDID })
	return list, nil
}

// Find returns the entry for udid, or the only reachable device when udid is empty. The
// mux is asked first; built-in discovery only looks for what it does not list.
func (h *Host) Find(ctx context.Context, udid string) (Entry, error) {
	if h == nil {
		return Find(ctx, udid)
	}
	if udid == "" {
		list, err := h.List(ctx)
		if err != nil {
			return Entry{}, err
		}
		return only(list)
	}
	list, muxErr := h.muxEntries(ctx)
	for _, e := range list {
		if strings.EqualFold(e.UDID, udid) {
			return e, nil
		}
	}
	if !h.cfg.WiFi.browses() {
		if muxErr != nil {
			return Entry{}, muxErr
		}
		return Entry{}, fmt.Errorf("%w: %s", ErrNotFound, udid)
	}
	if l := h.link(udid); l != nil {
		return l.entry(), nil
	}
	onMux := map[string]bool{}
	for _, e := range list {
		onMux[strings.ToUpper(e.UDID)] = true
	}
	found, err := h.discover(ctx, udid, onMux)
	if err != nil {
		return Entry{}, err
	}
	if len(found) == 0 {
		return Entry{}, fmt.Errorf("%w: %s (not on the mux, no Wi-Fi advert of it within %v)", ErrNotFound, udid, h.cfg.BrowseWait)
	}
	return found[0].entry(), nil
}

func only(list []Entry) (Entry, error) {
	switch len(list) {
	case 0:
		return Entry{}, ErrNotFound
	case 1:
		return list[0], nil
	}
	ids := make([]string, len(list))
	for i, e := range list {
		ids[i] = e.UDID
	}
	return Entry{}, fmt.Errorf("%d devices connected (%s): choose one with --udid", len(list), strings.Join(ids, ", "))
}

// Open starts a lockdown session with udid ("" = the only device), over the mux or
// directly over Wi-Fi.
func (h *Host) Open(ctx context.Context, udid string) (*Session, error) {
	if h == nil {
		return Open(ctx, udid)
	}
	e, err := h.Find(ctx, udid)
	if err != nil {
		return nil, err
	}
	return h.OpenEntry(ctx, e)
}

// OpenEntry starts a lockdown session with a listed device.
func (h *Host) OpenEntry(ctx context.Context, e Entry) (*Session, error) {
	if h == nil || e.Via != FoundWiFiDirect {
		return OpenEntry(ctx, e)
	}
	l := h.link(e.UDID)
	if l == nil {
		return nil, fmt.Errorf("%w: %s left the Wi-Fi network", ErrNotFound, e.UDID)
	}
	return h.openDirect(ctx, l)
}

func (h *Host) link(udid string) *wifiLink {
	h.mu.Lock()
	defer h.mu.Unlock()
	l := h.links[strings.ToUpper(udid)]
	if l != nil && l.isLost() {
		return nil
	}
	return l
}

// discover browses for up to BrowseWait and returns the live links of the devices found
// (want only, when set), identifying new adverts. UDIDs in onMux are left to the mux.
func (h *Host) discover(ctx context.Context, want string, onMux map[string]bool) ([]*wifiLink, error) {
	bctx, cancel := context.WithTimeout(ctx, h.cfg.BrowseWait)
	defer cancel()
	round := min(time.Second, h.cfg.BrowseWait)
	// Listing all: stop as soon as every paired device the mux does not serve is found.
	pending := map[string]bool{}
	if want == "" {
		for udid := range h.pairRecords(ctx, "") {
			if !onMux[strings.ToUpper(udid)] {
				pending[strings.ToUpper(udid)] = true
			}
		}
		if len(pending) == 0 {
			return nil, nil
		}
	}
	seen := map[string]bool{}
	var out []*wifiLink
	var lastErr error
	for a := range h.browse(bctx, round, round) {
		if seen[a.Instance+" "+a.Addr] {
			continue
		}
		seen[a.Instance+" "+a.Addr] = true
		l, err := h.adopt(ctx, a, want, onMux, nil)
		if err != nil {
			h.log.Debug("wifi advert not usable", "instance", a.Instance, "addr", a.Addr, "err", err)
			if !errors.Is(err, errNotThisOne) {
				lastErr = err
			}
			continue
		}
		if l == nil {
			continue
		}
		out = append(out, l)
		delete(pending, strings.ToUpper(l.udid))
		if want != "" || len(pending) == 0 {
			cancel()
			break
		}
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if len(out) == 0 && want != "" && lastErr != nil {
		return nil, lastErr
	}
	return out, nil
}

// Paired lists the UDIDs of the pair records in PairRecordDir: the devices this computer
// knows, reachable or not.
func (h *Host) Paired(ctx context.Context) []string {
	if h == nil {
		return nil
	}
	var out []string
	for udid := range h.pairRecords(ctx, "") {
		out = append(out, udid)
	}
	sort.Strings(out)
	return out
}

// UnreachableReason says why a paired device is not listed, for `snapback devices`. It is
// a pure function of what the Host knows: its mode, whether usbmuxd answered, and whether
// the device was ever seen on Wi-Fi (its address learnt).
func UnreachableReason(mode WiFiDiscovery, muxUp, learnt bool, wait time.Duration) string {
	usb := "not on USB"
	if !muxUp {
		usb = "usbmuxd not running, so USB is not watched"
	}
	switch mode {
	case WiFiOff:
		return usb + "; Wi-Fi discovery is off (wifi_discovery: off)"
	case WiFiMux:
		return usb + "; the mux does not list it on Wi-Fi and built-in discovery is off (wifi_discovery: mux)"
	}
	wifi := "no Wi-Fi advert from it within " + wait.String() +
		": is it on the same network and awake, with \"Show this iPhone when on Wi-Fi\" on (Finder/iTunes, or snapback once over USB)?"
	if learnt {
		wifi = "seen on Wi-Fi before, but no advert from it within " + wait.String() + ": asleep, out of range or on another network"
	}
	return usb + "; " + wifi
}

// Learnt reports whether the device was ever identified on Wi-Fi by this Host (or an
// earlier run sharing its CacheFile).
func (h *Host) Learnt(udid string) bool {
	if h == nil {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, u := range h.learnt {
		if strings.EqualFold(u, udid) {
			return true
		}
	}
	return false
}

// BrowseWait is how long List and Find listen for Wi-Fi adverts.
func (h *Host) BrowseWait() time.Duration {
	if h == nil {
		return 0
	}
	return h.cfg.BrowseWait
}
