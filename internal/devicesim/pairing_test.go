package devicesim

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// runToolErr runs a libimobiledevice tool and returns its combined output and error.
func runToolErr(t *testing.T, sim *Sim, bin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "USBMUXD_SOCKET_ADDRESS="+sim.Addr())
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Debian's idevicepair (an independent client: OpenSSL certificates, its own Pair request,
// SavePairRecord through libusbmuxd) pairs with an unpaired simulated device: first the
// dialog is pending, after the simulated user tapped Trust the pairing succeeds, validate
// succeeds, and a lockdown session with the saved record works (ideviceinfo). After
// Untrust on the device, validate fails.
func TestIdevicepairPairsUnpairedDevice(t *testing.T) {
	pair := needTool(t, "idevicepair")
	info := needTool(t, "ideviceinfo")
	sim := startSim(t, Options{})
	d := addDevice(t, sim, DeviceConfig{Unpaired: true, TrustDelay: 400 * time.Millisecond})

	out, err := runToolErr(t, sim, pair, "-u", d.UDID(), "pair")
	if err == nil || !strings.Contains(out, "accept the trust dialog") {
		t.Fatalf("idevicepair pair while the dialog is up = %v:\n%s\nwant the trust-dialog message", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err = runToolErr(t, sim, pair, "-u", d.UDID(), "pair")
		if err == nil {
			break
		}
		if time.Now().After(deadline) || !strings.Contains(out, "accept the trust dialog") {
			t.Fatalf("idevicepair pair: %v\n%s", err, out)
		}
	}
	if !strings.Contains(out, "SUCCESS: Paired with device "+d.UDID()) {
		t.Errorf("idevicepair pair said:\n%s", out)
	}
	if d.TrustDialogs() != 1 || len(d.TrustedHosts()) != 1 {
		t.Errorf("dialogs %d, trusted hosts %v; want one dialog and one trusted host", d.TrustDialogs(), d.TrustedHosts())
	}
	if out, err := runToolErr(t, sim, pair, "-u", d.UDID(), "validate"); err != nil || !strings.Contains(out, "SUCCESS: Validated pairing") {
		t.Fatalf("idevicepair validate: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(runTool(t, sim, info, "-u", d.UDID(), "-k", "DeviceName")); got != d.Identity().DeviceName {
		t.Errorf("ideviceinfo DeviceName after pairing = %q", got)
	}
	d.Untrust()
	if out, err := runToolErr(t, sim, pair, "-u", d.UDID(), "validate"); err == nil {
		t.Errorf("idevicepair validate after the device forgot the host succeeded:\n%s", out)
	}
}

// Debian's idevicepair refused by the user: the Don't Trust message.
func TestIdevicepairDenied(t *testing.T) {
	pair := needTool(t, "idevicepair")
	sim := startSim(t, Options{})
	d := addDevice(t, sim, DeviceConfig{Unpaired: true, TrustDeny: true})
	out, err := runToolErr(t, sim, pair, "-u", d.UDID(), "pair")
	if err == nil || !strings.Contains(strings.ToLower(out), "denied") {
		t.Fatalf("idevicepair pair with Don't Trust = %v:\n%s", err, out)
	}
}

// `ideviceinfo -s` (GetValue without a session) prints the public values of a device that
// does not trust this computer, and nothing private.
func TestIdeviceinfoSimpleUnpaired(t *testing.T) {
	info := needTool(t, "ideviceinfo")
	sim := startSim(t, Options{})
	d := addDevice(t, sim, DeviceConfig{Unpaired: true, Identity: Identity{DeviceName: "Anna's iPhone"}})
	m := parseInfo(runTool(t, sim, info, "-u", d.UDID(), "-s"))
	id := d.Identity()
	for k, want := range map[string]string{
		"UniqueDeviceID": id.UDID, "DeviceName": "Anna's iPhone", "ProductType": id.ProductType,
		"ProductVersion": id.ProductVersion, "WiFiAddress": id.WiFiAddress, "SerialNumber": id.SerialNumber,
	} {
		if m[k] != want {
			t.Errorf("ideviceinfo -s %s = %q; want %q", k, m[k], want)
		}
	}
	if _, ok := m["PhoneNumber"]; ok {
		t.Error("ideviceinfo -s shows the phone number without a session")
	}
	if d.TrustDialogs() != 0 {
		t.Error("reading public values raised the Trust dialog")
	}
}
