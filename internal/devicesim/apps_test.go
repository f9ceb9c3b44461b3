package devicesim

import (
	"bytes"
	"fmt"
	"reflect"
	"testing"

	"github.com/danielpaulus/go-ios/ios/installationproxy"
)

// appsBackup is a backup service that also lists user apps, as backupsim.Device does.
type appsBackup struct {
	echoBackup
	apps []map[string]any
}

func (b *appsBackup) Apps() []map[string]any { return b.apps }

func testApps(n int) []map[string]any {
	var apps []map[string]any
	for i := range n {
		id := fmt.Sprintf("org.example.app%d", i)
		apps = append(apps, map[string]any{
			"CFBundleIdentifier": id, "CFBundleVersion": "1.0", "CFBundleDisplayName": fmt.Sprint("App ", i),
			"ApplicationSINF": []byte{byte(i), 1, 2}, "iTunesMetadata": []byte("meta"), "Path": "/p/" + id, "Container": "/c/" + id,
		})
	}
	return apps
}

// TestGoIOSBrowseUserApps: go-ios's installationproxy client reads the simulator's paged
// Browse reply (BrowsingProgress pages, then Complete) into every app, in order.
func TestGoIOSBrowseUserApps(t *testing.T) {
	sim := startSim(t, Options{})
	apps := testApps(5) // three pages of browsePageSize 2
	d := addDevice(t, sim, DeviceConfig{Backup: &appsBackup{apps: apps}})
	c, err := installationproxy.New(findEntry(t, d.UDID(), TransportUSB))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := c.BrowseUserApps()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(apps) {
		t.Fatalf("got %d apps, want %d", len(got), len(apps))
	}
	for i, a := range got {
		if a.CFBundleIdentifier() != apps[i]["CFBundleIdentifier"] || !bytes.Equal(a["ApplicationSINF"].([]byte), apps[i]["ApplicationSINF"].([]byte)) {
			t.Errorf("app %d = %v", i, a)
		}
	}
	// The second Browse on the same connection works too, and system apps are none.
	if sys, err := c.BrowseSystemApps(); err != nil || len(sys) != 0 {
		t.Errorf("system apps = %v, %v", sys, err)
	}
}

func TestBrowsePagesReturnAttributes(t *testing.T) {
	pages := browsePages(testApps(3), map[string]any{"ApplicationType": "User", "ReturnAttributes": []any{"CFBundleIdentifier"}})
	if len(pages) != 3 || pages[2]["Status"] != "Complete" || pages[0]["Status"] != "BrowsingProgress" {
		t.Fatalf("pages = %v", pages)
	}
	e := pages[1]["CurrentList"].([]any)[0].(map[string]any)
	if !reflect.DeepEqual(e, map[string]any{"CFBundleIdentifier": "org.example.app2"}) || pages[1]["CurrentIndex"] != 2 {
		t.Errorf("page 2 = %v", pages[1])
	}
	if p := browsePages(nil, nil); len(p) != 1 || p[0]["Status"] != "Complete" {
		t.Errorf("empty browse = %v", p)
	}
}

func TestNoInstallationProxyConfig(t *testing.T) {
	sim := startSim(t, Options{})
	d := addDevice(t, sim, DeviceConfig{NoInstallationProxy: true})
	if _, err := installationproxy.New(findEntry(t, d.UDID(), TransportUSB)); err == nil {
		t.Error("installation_proxy started on a device configured without it")
	}
}
