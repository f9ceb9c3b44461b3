package settings

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Host-level settings: how this computer finds devices. They exist once, at the top level
// of the file (a device entry cannot override them).

// WiFiDiscovery says how Wi-Fi devices are found.
type WiFiDiscovery string

// Wi-Fi discovery modes.
const (
	// WiFiAuto uses the network devices the platform mux lists (macOS, netmuxd, usbmuxd2)
	// and finds the others itself over mDNS.
	WiFiAuto WiFiDiscovery = "auto"
	// WiFiBuiltin finds every Wi-Fi device itself, ignoring the mux's network devices.
	WiFiBuiltin WiFiDiscovery = "builtin"
	// WiFiMux uses only the network devices the mux lists.
	WiFiMux WiFiDiscovery = "mux"
	// WiFiOff backs up over USB only.
	WiFiOff WiFiDiscovery = "off"
)

// HostSettings are the top-level, host-wide keys.
type HostSettings struct {
	WiFiDiscovery WiFiDiscovery
	// PairRecords is the folder of <UDID>.plist pair records that built-in Wi-Fi discovery
	// reads when no mux serves them ("" = the platform's usbmuxd folder, /var/lib/lockdown on
	// Linux).
	PairRecords string
}

// hostKeys are the top-level keys outside the per-device overlay.
var hostKeys = []string{"wifi_discovery", "pair_records"}

type fileHost struct {
	WiFiDiscovery *string `mapstructure:"wifi_discovery" yaml:"wifi_discovery,omitempty"`
	PairRecords   *string `mapstructure:"pair_records" yaml:"pair_records,omitempty"`
}

// applyHost reads the host keys, reporting bad values.
func applyHost(f fileHost, probs *[]error) HostSettings {
	h := HostSettings{WiFiDiscovery: WiFiAuto}
	if f.WiFiDiscovery != nil {
		switch m := WiFiDiscovery(strings.ToLower(strings.TrimSpace(*f.WiFiDiscovery))); m {
		case WiFiAuto, WiFiBuiltin, WiFiMux, WiFiOff:
			h.WiFiDiscovery = m
		default:
			*probs = append(*probs, &Problem{Key: "wifi_discovery", Problem: fmt.Sprintf("%q is not a discovery mode", *f.WiFiDiscovery),
				Fix: "use auto (the mux's Wi-Fi devices, and Snapback finds the rest), builtin (Snapback finds all), mux (only the mux's) or off (USB only)"})
		}
	}
	if f.PairRecords != nil && *f.PairRecords != "" {
		if !filepath.IsAbs(*f.PairRecords) {
			*probs = append(*probs, &Problem{Key: "pair_records", Problem: fmt.Sprintf("%q is not an absolute path", *f.PairRecords),
				Fix: "write the full path of the folder with <UDID>.plist pair records, e.g. /var/lib/lockdown"})
		} else {
			h.PairRecords = *f.PairRecords
		}
	}
	return h
}
