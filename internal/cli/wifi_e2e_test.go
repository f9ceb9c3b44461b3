//go:build linux

package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"snapback/internal/app"
	"snapback/internal/device"
	"snapback/internal/devicesim"
	"snapback/internal/devicesim/backupsim"
	"snapback/internal/netnstest"
	"snapback/internal/store"
	"snapback/internal/testenv"
	"snapback/jobs"
)

// TestWiFiBackupWithNothingElseInstalled is the NAS case of issue #13: in a fresh network
// namespace with no usbmuxd (USBMUXD_SOCKET_ADDRESS points nowhere), `snapback simulate
// --wifi-only --mdns` and `snapback backup --udid U` make a full and then an incremental
// backup over built-in discovery, with the device's hardware Wi-Fi address and with a
// private one that matches no pair record; `snapback devices` says how it was found.
func TestWiFiBackupWithNothingElseInstalled(t *testing.T) {
	if !netnstest.Run(t) {
		return
	}
	for _, tc := range []struct {
		name  string
		flags []string
	}{
		{"hardware-address", nil},
		{"private-mac", []string{"--private-mac"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := cfgTestEnv(t)
			state := filepath.Join(dir, "sim")
			writeConfig(t, dir, "wifi_discovery: builtin\npair_records: "+filepath.Join(state, "pairrecords")+"\n")
			t.Setenv("SNAPBACK_WIFI_DISCOVERY", "")           // the file's builtin, not cfgTestEnv's mux
			t.Setenv("USBMUXD_SOCKET_ADDRESS", "127.0.0.1:1") // no usbmuxd, no netmuxd
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()

			udid := startSimulateCLI(t, ctx, append([]string{"--wifi-only", "--mdns", "--mdns-iface", "lo",
				"--state", state, "--listen", "127.0.0.1:0", "--files", "60", "--size", "2MB",
				"--passcode-delay", "50ms", "--mutate", "10", "--heartbeat-interval", "1s"}, tc.flags...))

			cli := func(args ...string) string {
				t.Helper()
				root := newRootCmd("test")
				var b bytes.Buffer
				root.SetOut(&b)
				root.SetErr(&b)
				root.SetArgs(args)
				if err := root.ExecuteContext(ctx); err != nil {
					t.Fatalf("snapback %s: %v\n%s", strings.Join(args, " "), err, b.String())
				}
				return b.String()
			}
			cli("backup", "--udid", udid)
			cli("backup", "--udid", udid)

			loc, _ := store.DefaultLocation()
			st, err := store.Open(ctx, loc, store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			snaps, _ := st.List(udid)
			if len(snaps) != 2 || snaps[0].Kind != store.KindFull || snaps[1].Kind != store.KindIncremental {
				t.Fatalf("snapshots %+v; want a full and an incremental one", snaps)
			}
			if err := st.Verify(ctx, udid, snaps[1].ID); err != nil {
				t.Fatalf("incremental snapshot does not verify: %v", err)
			}

			var rows []deviceRow
			if err := json.Unmarshal([]byte(cli("devices", "--json")), &rows); err != nil {
				t.Fatal(err)
			}
			if len(rows) != 1 || rows[0].UDID != udid || rows[0].Via != device.FoundWiFiDirect || rows[0].Info == nil {
				t.Fatalf("devices: %+v; want %s found wifi-direct with its info", rows, udid)
			}
			if out := cli("devices"); !strings.Contains(out, "wifi direct") {
				t.Fatalf("devices table does not say how the device was found:\n%s", out)
			}

			// The device drops off the network (simulate's SIGUSR1): devices names it with
			// the reason instead of forgetting it.
			if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
				t.Fatal(err)
			}
			testenv.WaitFor(t, 15*time.Second, "devices to list the device as unreachable", func() bool {
				rows = nil
				if err := json.Unmarshal([]byte(cli("devices", "--json")), &rows); err != nil {
					t.Fatal(err)
				}
				return len(rows) == 1 && rows[0].Unreachable != ""
			})
			if !strings.Contains(rows[0].Unreachable, "seen on Wi-Fi before") || rows[0].UDID != udid {
				t.Fatalf("unreachable row %+v; want the learnt device with its reason", rows[0])
			}
		})
	}
}

// startSimulateCLI runs `snapback simulate args...` in this process until ctx ends and
// returns the UDID of its first device once its mDNS advert is up.
func startSimulateCLI(t *testing.T, ctx context.Context, args []string) string {
	t.Helper()
	pr, pw := io.Pipe()
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		root := newRootCmd("test")
		root.SetOut(pw)
		root.SetErr(io.Discard)
		root.SetArgs(append([]string{"simulate"}, args...))
		err := root.ExecuteContext(sctx)
		pw.CloseWithError(io.EOF)
		done <- err
	}()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("simulate: %v", err)
		}
	})
	sc := bufio.NewScanner(pr)
	go func() { <-sctx.Done(); pr.Close() }()
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 3 && f[0] == "#" && f[1] == "mdns:" {
			go io.Copy(io.Discard, pr) // keep the simulator's output flowing
			return f[2]
		}
	}
	t.Fatalf("simulate printed no mdns line: %v", sc.Err())
	return ""
}

// stallFirst is a device whose first backup hangs in the long silent scan real devices
// have (real-devices.md row 6) until the link goes; later backups run normally.
type stallFirst struct {
	*backupsim.Device
	calls   atomic.Int32
	stalled chan struct{}
}

func (s *stallFirst) Serve(ctx context.Context, rw io.ReadWriter, n devicesim.Notifier) error {
	if s.calls.Add(1) == 1 {
		close(s.stalled)
		<-ctx.Done()
		return ctx.Err()
	}
	return s.Device.Serve(ctx, rw, n)
}

// TestDaemonBacksUpWiFiDeviceWhenItAppearsAndReturns: the daemon in a namespace with no
// usbmuxd backs up a device found by built-in discovery by itself; when the device drops
// off Wi-Fi in the middle of its backup the run ends as "device gone" (unreachable, not a
// failed attempt that waits for a retry), and when the device returns it is backed up.
func TestDaemonBacksUpWiFiDeviceWhenItAppearsAndReturns(t *testing.T) {
	if !netnstest.Run(t) {
		return
	}
	dir := cfgTestEnv(t)
	records := filepath.Join(dir, "lockdown")
	writeConfig(t, dir, "wifi_discovery: builtin\npair_records: "+records+
		"\nschedule: {window: '00:00-24:00', retry_delay: 1h}\nconditions: {min_battery: 0}\n")
	t.Setenv("SNAPBACK_WIFI_DISCOVERY", "")
	t.Setenv("USBMUXD_SOCKET_ADDRESS", "127.0.0.1:1")

	sim, err := devicesim.Start(devicesim.Options{HeartbeatInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	id := devicesim.DefaultIdentity(0)
	agent, err := backupsim.New(backupsim.Options{
		Identity: backupsim.Identity{UDID: id.UDID, DeviceName: id.DeviceName, ProductType: id.ProductType,
			ProductVersion: id.ProductVersion, BuildVersion: id.BuildVersion, SerialNumber: id.SerialNumber},
		Files: 60, TotalSize: 2 << 20, Seed: 5, PasscodeDelay: 20 * time.Millisecond, TempDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	dev := &stallFirst{Device: agent, stalled: make(chan struct{})}
	d, err := sim.AddDevice(devicesim.DeviceConfig{Identity: id, WiFi: true, Detached: true, Backup: dev,
		AnnouncedWiFiAddress: devicesim.PrivateWiFiAddress(id.UDID)})
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := d.PairRecord().Marshal()
	if err := os.MkdirAll(records, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(records, id.UDID+".plist"), rec, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := sim.StartMDNS("lo"); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ready := make(chan *jobs.Manager, 1)
	done := make(chan error, 1)
	var daemonLog syncBuffer
	go func() {
		done <- app.New(app.Config{Logger: slogTo(&daemonLog), Ready: func(m *jobs.Manager) { ready <- m }}).Run(ctx)
	}()
	defer func() { cancel(); <-done }()
	defer func() {
		if t.Failed() {
			t.Logf("daemon log:\n%s", daemonLog.String())
		}
	}()
	m := <-ready
	status := func(what string, ok func(jobs.DeviceStatus) bool) jobs.DeviceStatus {
		t.Helper()
		var s jobs.DeviceStatus
		testenv.WaitFor(t, 30*time.Second, what, func() bool {
			var found bool
			s, found = m.Status().Device(id.UDID)
			return found && ok(s)
		})
		return s
	}

	// The device comes onto the network: found and backed up without anyone asking.
	if err := sim.Attach(id.UDID); err != nil {
		t.Fatal(err)
	}
	select {
	case <-dev.stalled:
	case <-time.After(30 * time.Second):
		t.Fatal("the daemon did not start a backup of the device that appeared on Wi-Fi")
	}
	// It leaves in the middle of the backup.
	if err := sim.SetTransports(id.UDID, false, false); err != nil {
		t.Fatal(err)
	}
	// The status is published as a whole now and then: wait for the settled one.
	s := status("the run to end as device gone, the device not connected", func(s jobs.DeviceStatus) bool {
		return !s.Connected && s.LastResult == jobs.ResultDeviceGone && s.Reason == jobs.ReasonNotConnected
	})
	if s.State == jobs.StateFailed {
		t.Fatalf("status %+v; a device that went away is not a failed device", s)
	}
	// It returns: backed up at once, not after the 1 h retry delay of a failed attempt.
	if err := sim.SetTransports(id.UDID, false, true); err != nil {
		t.Fatal(err)
	}
	status("a successful backup after the device returned", func(s jobs.DeviceStatus) bool {
		return s.Connected && s.LastResult == jobs.ResultSuccess && !s.LastSuccess.IsZero()
	})
	if n := agent.Counters().Backups; n != 1 {
		t.Fatalf("device completed %d backups; want 1", n)
	}
}
