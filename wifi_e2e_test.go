package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"snapback/internal/device"
	"snapback/internal/netnstest"
	"snapback/internal/store"
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
			t.Setenv("USBMUXD_SOCKET_ADDRESS", "127.0.0.1:1") // no usbmuxd, no netmuxd
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()

			udid := startSimulateCLI(t, ctx, append([]string{"--wifi-only", "--mdns", "--mdns-iface", "lo",
				"--state", state, "--listen", "127.0.0.1:0", "--files", "60", "--size", "2MB",
				"--passcode-delay", "50ms", "--mutate", "10", "--heartbeat-interval", "1s"}, tc.flags...))

			cli := func(args ...string) string {
				t.Helper()
				root := newRootCmd()
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
		root := newRootCmd()
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
