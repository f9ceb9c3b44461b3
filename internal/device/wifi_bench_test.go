package device_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"snapback/internal/device"
	"snapback/internal/devicesim"
	"snapback/internal/devicesim/backupsim"
	"snapback/internal/engine"
	"snapback/internal/mobilebackup2"
	"snapback/internal/netnstest"
)

// BenchmarkWiFiDiscoveryToFirstByte compares a full backup of one simulated Wi-Fi device
// found by built-in discovery (mDNS, identification, lockdown and services over TCP) with
// the same device through the simulator's mux (usbmuxd Connect). Each iteration starts a
// new Host: "ms-to-found" is discovery alone (for built-in: browsing, proving the pairing
// with the private address, starting the heartbeat; for the mux: ListDevices), and
// "ms-to-first-byte" covers discovery (browsing, proving the pairing,
// starting the heartbeat for built-in), the lockdown session, the services, the passcode
// handshake and the device's first upload; MB/s is the transfer rate from the first byte
// to the end. Runs in a network namespace of its own.
func BenchmarkWiFiDiscoveryToFirstByte(b *testing.B) {
	if !netnstest.Run(b) {
		return
	}
	sim, err := devicesim.Start(devicesim.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer sim.Close()
	id := devicesim.DefaultIdentity(0)
	agent, err := backupsim.New(backupsim.Options{
		Identity: backupsim.Identity{UDID: id.UDID, DeviceName: id.DeviceName, ProductType: id.ProductType,
			ProductVersion: id.ProductVersion, BuildVersion: id.BuildVersion, SerialNumber: id.SerialNumber},
		Files: 300, TotalSize: 48 << 20, Seed: 7, PasscodeDelay: time.Millisecond, TempDir: b.TempDir(),
	})
	if err != nil {
		b.Fatal(err)
	}
	d, err := sim.AddDevice(devicesim.DeviceConfig{Identity: id, WiFi: true, Backup: agent,
		AnnouncedWiFiAddress: devicesim.PrivateWiFiAddress(id.UDID)})
	if err != nil {
		b.Fatal(err)
	}
	records := b.TempDir()
	rec, _ := d.PairRecord().Marshal()
	if err := os.WriteFile(filepath.Join(records, id.UDID+".plist"), rec, 0o600); err != nil {
		b.Fatal(err)
	}
	if err := sim.StartMDNS("lo"); err != nil {
		b.Fatal(err)
	}
	for _, path := range []struct {
		name string
		mode device.WiFiDiscovery
		mux  string
	}{
		{"builtin", device.WiFiBuiltin, "127.0.0.1:1"},
		{"mux", device.WiFiMux, sim.Addr()},
	} {
		b.Run(path.name, func(b *testing.B) {
			b.Setenv("USBMUXD_SOCKET_ADDRESS", path.mux)
			var toFound, toFirst, transfer time.Duration
			var bytes int64
			for range b.N {
				root := b.TempDir()
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				h := device.NewHost(device.HostConfig{WiFi: path.mode, PairRecordDir: records, BrowseWait: 5 * time.Second})
				start := time.Now()
				if _, err := h.Find(ctx, id.UDID); err != nil { // the backup below reuses what Find found
					b.Fatal(err)
				}
				toFound += time.Since(start)
				var first time.Time
				res, err := engine.Backup(ctx, engine.Request{Devices: h, UDID: id.UDID, Root: root, Full: true,
					Events: func(ev mobilebackup2.Event) {
						if first.IsZero() && ev.BytesDone > 0 {
							first = ev.Time
						}
					}})
				h.Close()
				cancel()
				if err != nil {
					b.Fatal(err)
				}
				toFirst += first.Sub(start)
				transfer += res.Finished.Sub(first)
				bytes += res.Backup.BytesReceived
				os.RemoveAll(root)
			}
			n := float64(b.N)
			b.ReportMetric(float64(toFound.Microseconds())/1e3/n, "ms-to-found")
			b.ReportMetric(float64(toFirst.Milliseconds())/n, "ms-to-first-byte")
			b.ReportMetric(float64(bytes)/1e6/transfer.Seconds(), "MB/s")
		})
	}
}
