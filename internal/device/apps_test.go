package device

import (
	"bytes"
	"errors"
	"net"
	"testing"

	"snapback/internal/devicesim"
	"snapback/internal/devicesim/backupsim"
	"snapback/internal/plistio"
)

// TestUserAppsAndIcons: UserApps reads every page of the simulator's Browse with the
// attributes Info.plist needs, and Icons returns a PNG per app.
func TestUserAppsAndIcons(t *testing.T) {
	sim := startSim(t)
	agent, err := backupsim.New(backupsim.Options{Seed: 3, Files: 10, TempDir: t.TempDir(),
		Identity: backupsim.Identity{UDID: devicesim.DefaultIdentity(0).UDID}})
	if err != nil {
		t.Fatal(err)
	}
	d, err := sim.AddDevice(devicesim.DeviceConfig{Backup: agent})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	s, err := Open(ctx, d.UDID())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	apps, err := s.UserApps(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := agent.Apps()
	if len(apps) != len(want) {
		t.Fatalf("got %d apps, want %d", len(apps), len(want))
	}
	var ids []string
	for i, a := range apps {
		w := want[i]
		if a.BundleID != w["CFBundleIdentifier"] || a.Version != w["CFBundleVersion"] || a.DisplayName != w["CFBundleDisplayName"] ||
			a.Path != w["Path"] || a.Container != w["Container"] ||
			!bytes.Equal(a.SINF, w["ApplicationSINF"].([]byte)) || !bytes.Equal(a.Metadata, w["iTunesMetadata"].([]byte)) {
			t.Errorf("app %d = %+v, want %v", i, a, w)
		}
		ids = append(ids, a.BundleID)
	}
	icons, err := s.Icons(ctx, append(ids, "com.example.not.installed"))
	if err != nil {
		t.Fatal(err)
	}
	if len(icons) != len(ids) || !bytes.HasPrefix(icons[ids[0]], []byte("\x89PNG")) {
		t.Errorf("icons for %d of %d apps", len(icons), len(ids))
	}
}

// TestAFCFiles: ReadFile, WriteFile, MkDir and Remove against the simulated AFC; ReadFile
// refuses a file over its limit and reports a missing one as not found.
func TestAFCFiles(t *testing.T) {
	sim := startSim(t)
	d, err := sim.AddDevice(devicesim.DeviceConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	s, err := Open(ctx, d.UDID())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a, err := s.StartAFC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	big := bytes.Repeat([]byte("0123456789abcdef"), 10000) // 160000 bytes: several chunks
	if err := a.MkDir(ctx, "/iTunesRestore/sub"); err != nil {
		t.Fatal(err)
	}
	if err := a.WriteFile(ctx, "/iTunesRestore/sub/f", big); err != nil {
		t.Fatal(err)
	}
	if got, _ := d.AFCFile("/iTunesRestore/sub/f"); !bytes.Equal(got, big) {
		t.Fatalf("device holds %d bytes, want %d", len(got), len(big))
	}
	got, err := a.ReadFile(ctx, "/iTunesRestore/sub/f", len(big))
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("ReadFile = %d bytes, %v", len(got), err)
	}
	if _, err := a.ReadFile(ctx, "/iTunesRestore/sub/f", len(big)-1); !errors.Is(err, ErrTooLarge) {
		t.Errorf("ReadFile over the limit = %v, want ErrTooLarge", err)
	}
	if err := a.WriteFile(ctx, "/iTunesRestore/sub/f", []byte("short")); err != nil {
		t.Fatal(err)
	}
	if got, _ := d.AFCFile("/iTunesRestore/sub/f"); string(got) != "short" {
		t.Errorf("WriteFile did not truncate: %d bytes", len(got))
	}
	if err := a.Remove(ctx, "/iTunesRestore/sub/f"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.ReadFile(ctx, "/iTunesRestore/sub/f", 10); !IsNotFound(err) {
		t.Errorf("ReadFile of a removed file = %v, want not found", err)
	}
	if b, err := a.ReadFile(ctx, "/iTunes_Control/iTunes/iTunesPrefs", 1<<20); err != nil || len(b) == 0 {
		t.Errorf("seeded iTunesPrefs = %d bytes, %v", len(b), err)
	}
}

// TestBrowseNeverComplete: a device that pages forever without Complete, or sends an
// Error, ends the Browse with an error instead of a hang or unbounded memory.
func TestBrowseNeverComplete(t *testing.T) {
	for _, tc := range []struct {
		name string
		page map[string]any
	}{
		{"no-complete", map[string]any{"Status": "BrowsingProgress", "CurrentList": []any{map[string]any{"CFBundleIdentifier": "a.b"}}}},
		{"error", map[string]any{"Error": "APIInternalError"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host, dev := net.Pipe()
			defer host.Close()
			go func() {
				defer dev.Close()
				var req map[string]any
				if err := plistio.ReadPlist(dev, 1<<20, &req); err != nil {
					return
				}
				for {
					if err := plistio.WritePlist(dev, tc.page, plistio.Binary); err != nil {
						return
					}
				}
			}()
			if apps, err := browseUserApps(ctxT(t), host); err == nil {
				t.Fatalf("browse succeeded with %d apps", len(apps))
			}
		})
	}
}
