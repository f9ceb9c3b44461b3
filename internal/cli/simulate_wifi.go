package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"time"

	"github.com/spf13/pflag"

	"snapback/internal/devicesim"
)

// The Wi-Fi knobs of `snapback simulate`: mDNS announcement (for hosts that discover
// devices themselves, like Snapback's built-in discovery, netmuxd or usbmuxd2), a private
// Wi-Fi address, the heartbeat interval, and dropping off the network on SIGUSR1.

func addSimulateWiFiFlags(fl *pflag.FlagSet, f *simulateFlags) {
	fl.BoolVar(&f.mdns, "mdns", false, "announce the Wi-Fi devices over mDNS (_apple-mobdev2._tcp) as real devices do; use only on loopback or in a network namespace")
	fl.StringVar(&f.mdnsIface, "mdns-iface", "", "network interface for the mDNS announcements (default: the system's multicast route)")
	fl.BoolVar(&f.privateMAC, "private-mac", false, "announce a private Wi-Fi address that differs from the pair record's WiFiMACAddress (iOS 26.4 and later; --realistic includes it)")
	fl.DurationVar(&f.heartbeat, "heartbeat-interval", 0, "interval of the com.apple.mobile.heartbeat Marco messages (default 10s)")
	// SIGUSR1 toggles the Wi-Fi devices off and on the network; see startSimulateWiFi.
}

func announcedMAC(f simulateFlags, udid string) string {
	if f.privateMAC || f.quirks.realistic { // iOS 26.4's default: --realistic includes it
		return devicesim.PrivateWiFiAddress(udid)
	}
	return ""
}

// startSimulateWiFi starts the mDNS announcer and the SIGUSR1 handler that takes every
// Wi-Fi device off the network (connections cut, announcements stopped) or, on the next
// SIGUSR1, back on with a new address. The handler goroutine ends with ctx.
func startSimulateWiFi(ctx context.Context, sim *devicesim.Sim, f simulateFlags, out io.Writer, log *slog.Logger) error {
	if !f.wifi && !f.wifiOnly {
		if f.mdns || f.privateMAC {
			return errors.New("--mdns and --private-mac need --wifi or --wifi-only")
		}
		return nil
	}
	// Subscribe before printing anything: a script that reads the output and signals at
	// once must not kill the simulator with SIGUSR1's default action.
	sig := make(chan os.Signal, 1)
	if len(toggleSignals) > 0 {
		signal.Notify(sig, toggleSignals...)
	}
	if f.mdns {
		if err := sim.StartMDNS(f.mdnsIface); err != nil {
			signal.Stop(sig)
			return err
		}
		for _, d := range sim.Devices() {
			fmt.Fprintf(out, "# mdns: %s %s.%s.local. at %s\n", d.UDID(), devicesim.MDNSInstanceName(d.AnnouncedWiFiAddress()), devicesim.MDNSService, d.WiFiAddr())
		}
	}
	go func() {
		defer signal.Stop(sig)
		on := true
		for {
			select {
			case <-ctx.Done():
				return
			case <-sig:
			}
			on = !on
			for _, d := range sim.Devices() {
				if err := sim.SetTransports(d.UDID(), !f.wifiOnly, on); err != nil {
					log.Warn("wifi toggle", "udid", d.UDID(), "err", err)
				}
				log.Info("wifi", "udid", d.UDID(), "on_network", on, "addr", d.WiFiAddr(), "at", time.Now().Format(time.RFC3339))
			}
		}
	}()
	return nil
}
