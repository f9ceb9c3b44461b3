package devicesim

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/danielpaulus/go-ios/ios"

	"snapback/internal/testenv"
)

// needTool returns the path of a libimobiledevice tool. Missing tools skip the test
// locally and fail it under CI=true (DESIGN.md §8: no silent skips in CI).
func needTool(t *testing.T, name string) string {
	t.Helper()
	return testenv.RequireTool(t, name)
}

// runTool runs a libimobiledevice tool against the simulator and returns its stdout.
func runTool(t *testing.T, sim *Sim, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "USBMUXD_SOCKET_ADDRESS="+sim.Addr())
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v\nstdout:\n%s\nstderr:\n%s", bin, args, err, out, stderr.String())
	}
	return string(out)
}

// parseInfo turns ideviceinfo's "Key: Value" lines into a map.
func parseInfo(out string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, ": "); ok {
			m[k] = v
		}
	}
	return m
}

// TestIdeviceinfo drives Debian's libimobiledevice (the code idevicebackup2 uses) against
// the simulator: usbmuxd XML, ReadPairRecord/ReadBUID, StartSession with TLS where the
// client presents the RootCertificate, GetValue in a session, StopSession + close_notify.
func TestIdeviceinfo(t *testing.T) {
	bin := needTool(t, "ideviceinfo")
	sim := startSim(t, Options{})
	addDevice(t, sim, DeviceConfig{}) // a second device, so -u must pick the right one
	d := addDevice(t, sim, DeviceConfig{Identity: Identity{DeviceName: "Grace's iPad", ProductType: "iPad13,4", ProductVersion: "16.6"}, WiFi: true, USB: true, BatteryLevel: 42, Charging: true})

	info := parseInfo(runTool(t, sim, bin, "-u", d.UDID()))
	id := d.Identity()
	for k, want := range map[string]string{
		"UniqueDeviceID":                       id.UDID,
		"DeviceName":                           "Grace's iPad",
		"ProductType":                          "iPad13,4",
		"ProductVersion":                       "16.6",
		"BuildVersion":                         id.BuildVersion,
		"SerialNumber":                         id.SerialNumber,
		"PhoneNumber":                          id.PhoneNumber,
		"InternationalMobileEquipmentIdentity": id.IMEI,
		"IntegratedCircuitCardIdentity":        id.ICCID,
		"WiFiAddress":                          id.WiFiAddress,
		"HardwareModel":                        id.HardwareModel,
		"PasswordProtected":                    "false",
	} {
		if info[k] != want {
			t.Errorf("ideviceinfo %s = %q, want %q", k, info[k], want)
		}
	}

	bat := parseInfo(runTool(t, sim, bin, "-u", d.UDID(), "-q", "com.apple.mobile.battery"))
	if bat["BatteryCurrentCapacity"] != "42" || bat["BatteryIsCharging"] != "true" {
		t.Errorf("battery domain = %v, want capacity 42 and charging", bat)
	}
	if got := strings.TrimSpace(runTool(t, sim, bin, "-u", d.UDID(), "-q", "com.apple.mobile.backup", "-k", "WillEncrypt")); got != "false" {
		t.Errorf("WillEncrypt = %q, want false", got)
	}
	if got := strings.TrimSpace(runTool(t, sim, bin, "-u", d.UDID(), "-s", "-k", "ProductVersion")); got != "16.6" {
		t.Errorf("ProductVersion without a session = %q, want 16.6", got)
	}
	if c := d.Counters(); c.Sessions != 3 || c.Lockdown != 4 {
		t.Errorf("counters %+v: want 4 lockdown connections, 3 of them with a TLS session", c)
	}
}

// TestIdeviceinfoNetwork uses libimobiledevice's Wi-Fi path (-n): it picks the Network
// entry and connects straight to the NetworkAddress instead of through usbmuxd Connect.
func TestIdeviceinfoNetwork(t *testing.T) {
	bin := needTool(t, "ideviceinfo")
	sim := startSim(t, Options{})
	d := addDevice(t, sim, DeviceConfig{WiFi: true})
	info := parseInfo(runTool(t, sim, bin, "-n", "-u", d.UDID()))
	if info["UniqueDeviceID"] != d.UDID() || info["DeviceName"] != d.Identity().DeviceName {
		t.Errorf("ideviceinfo -n = %v", info)
	}
	c := d.Counters()
	if c.DirectConnects != 1 || c.MuxConnects != 0 || c.Sessions != 1 {
		t.Errorf("counters %+v: want one direct lockdown connection with a session, no usbmuxd Connect", c)
	}
	// Without the Wi-Fi entry the device is gone for -n.
	if err := sim.SetTransports(d.UDID(), true, false); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-n", "-u", d.UDID())
	cmd.Env = append(os.Environ(), "USBMUXD_SOCKET_ADDRESS="+sim.Addr())
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("ideviceinfo -n found a USB-only device:\n%s", out)
	}
}

// TestUnixSocketSharedEnvValue: USBMUXD_SOCKET_ADDRESS=UNIX:///path works for both
// libusbmuxd 2.0.2 (strips "UNIX:", keeps "///path") and go-ios v1.3.2 (lower-cases the
// scheme of "scheme://address"), unlike the UNIX:/path form protocol.md §2.1 describes.
func TestUnixSocketSharedEnvValue(t *testing.T) {
	bin := needTool(t, "ideviceinfo")
	path := filepath.Join(t.TempDir(), "mux.sock")
	sim := startSim(t, Options{UnixPath: path})
	d := addDevice(t, sim, DeviceConfig{})
	env := "UNIX://" + path
	t.Setenv("USBMUXD_SOCKET_ADDRESS", env)
	list, err := ios.ListDevices()
	if err != nil || len(list.DeviceList) != 1 || list.DeviceList[0].Properties.SerialNumber != d.UDID() {
		t.Errorf("go-ios over %s: %+v, %v", env, list.DeviceList, err)
	}
	cmd := exec.Command(bin, "-u", d.UDID(), "-k", "UniqueDeviceID")
	cmd.Env = append(os.Environ(), "USBMUXD_SOCKET_ADDRESS="+env)
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != d.UDID() {
		t.Errorf("ideviceinfo over %s: %q, %v", env, out, err)
	}
}
