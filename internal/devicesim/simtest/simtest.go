// Package simtest starts the simulated iPhone for tests in other packages: one fake usbmuxd
// per test on a loopback port, closed when the test ends, with go-ios pointed at it, and
// simulated devices that run a backup agent. It replaces the start-up code each package's
// tests used to copy.
package simtest

import (
	"testing"

	"snapback/internal/devicesim"
	"snapback/internal/devicesim/backupsim"
)

// Start serves a simulated usbmuxd until the test ends and points go-ios (and the snapback
// commands) at it through USBMUXD_SOCKET_ADDRESS.
func Start(t testing.TB) *devicesim.Sim {
	t.Helper()
	sim, err := devicesim.Start(devicesim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	t.Setenv("USBMUXD_SOCKET_ADDRESS", sim.Addr())
	return sim
}

// BackupIdentity is the backup agent's view of a device identity.
func BackupIdentity(id devicesim.Identity) backupsim.Identity {
	return backupsim.Identity{UDID: id.UDID, DeviceName: id.DeviceName, ProductType: id.ProductType,
		ProductVersion: id.ProductVersion, BuildVersion: id.BuildVersion, SerialNumber: id.SerialNumber,
		PhoneNumber: id.PhoneNumber, IMEI: id.IMEI, ICCID: id.ICCID}
}

// NewAgent builds the backup agent of the device id with content and knobs from o (its
// Identity is set from id; TempDir defaults to one of the test's).
func NewAgent(t testing.TB, id devicesim.Identity, o backupsim.Options) *backupsim.Device {
	t.Helper()
	o.Identity = BackupIdentity(id)
	if o.TempDir == "" {
		o.TempDir = t.TempDir()
	}
	agent, err := backupsim.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return agent
}

// AddDevice attaches a device to sim that backs up through an agent built from o. cfg says
// how it is attached (USB, Wi-Fi, battery…); its Identity defaults to DefaultIdentity(0).
func AddDevice(t testing.TB, sim *devicesim.Sim, cfg devicesim.DeviceConfig, o backupsim.Options) (*devicesim.Device, *backupsim.Device) {
	t.Helper()
	if cfg.Identity.UDID == "" {
		cfg.Identity = devicesim.DefaultIdentity(0)
	}
	agent := NewAgent(t, cfg.Identity, o)
	if cfg.Backup == nil {
		cfg.Backup = agent
	}
	d, err := sim.AddDevice(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d, agent
}
