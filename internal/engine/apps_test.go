package engine

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"snapback/internal/backupfmt"
	"snapback/internal/devicesim"
	"snapback/internal/devicesim/backupsim"
	"snapback/internal/plistio"
)

// appKeys returns the sorted keys of Info.plist's Applications.
func appKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// TestInfoPlistApps: a Snapback backup's Info.plist lists the simulated device's user apps
// with the SINF and metadata installation_proxy reported, an icon from springboardservices,
// every bundle under Installed Applications, and the /iTunes_Control files under iTunes Files.
func TestInfoPlistApps(t *testing.T) {
	r := newRig(t, backupsim.Options{Seed: 5, Files: 60}, devicesim.DeviceConfig{})
	root := t.TempDir()
	if _, err := r.backup(t, root, true, nil); err != nil {
		t.Fatal(err)
	}
	info, err := backupfmt.ReadInfo(filepath.Join(root, r.udid, "Info.plist"))
	if err != nil {
		t.Fatal(err)
	}
	apps := r.agent.Apps()
	if len(apps) == 0 {
		t.Fatal("simulated device has no apps")
	}
	var want []string
	for _, a := range apps {
		id := a["CFBundleIdentifier"].(string)
		want = append(want, id)
		e, ok := info.Applications[id].(map[string]any)
		if !ok {
			t.Errorf("Applications lacks %s", id)
			continue
		}
		if !bytes.Equal(e["ApplicationSINF"].([]byte), a["ApplicationSINF"].([]byte)) {
			t.Errorf("%s: SINF differs", id)
		}
		meta, _ := e["iTunesMetadata"].([]byte)
		if !bytes.Equal(meta, a["iTunesMetadata"].([]byte)) {
			t.Errorf("%s: iTunesMetadata differs", id)
		}
		var m map[string]any
		if err := plistio.Unmarshal(meta, &m); err != nil || m["softwareVersionBundleId"] != id {
			t.Errorf("%s: metadata %v, %v", id, m, err)
		}
		if png, _ := e["PlaceholderIcon"].([]byte); !bytes.HasPrefix(png, []byte("\x89PNG")) {
			t.Errorf("%s: no PNG icon", id)
		}
	}
	if got := appKeys(info.Applications); !reflect.DeepEqual(got, sortedCopy(want)) {
		t.Errorf("Applications = %v, want %v", got, sortedCopy(want))
	}
	if !reflect.DeepEqual(sortedCopy(info.InstalledApplications), sortedCopy(want)) {
		t.Errorf("Installed Applications = %v, want %v", info.InstalledApplications, want)
	}
	prefs, _ := r.dev.AFCFile("/iTunes_Control/iTunes/iTunesPrefs")
	if len(prefs) == 0 || !bytes.Equal(info.ITunesFiles["iTunesPrefs"], prefs) {
		t.Errorf("iTunes Files iTunesPrefs = %d bytes, device has %d", len(info.ITunesFiles["iTunesPrefs"]), len(prefs))
	}
	if _, ok := info.ITunesFiles["IC-Info.sidb"]; !ok {
		t.Errorf("iTunes Files lacks IC-Info.sidb: %v", appKeysBytes(info.ITunesFiles))
	}
}

func sortedCopy(s []string) []string {
	c := append([]string(nil), s...)
	sort.Strings(c)
	return c
}

func appKeysBytes(m map[string][]byte) []string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// TestNoInstallationProxy: a device whose installation_proxy cannot start is still backed
// up; Info.plist then lists no apps (as with idevicebackup2).
func TestNoInstallationProxy(t *testing.T) {
	r := newRig(t, backupsim.Options{Seed: 6, Files: 40}, devicesim.DeviceConfig{NoInstallationProxy: true})
	root := t.TempDir()
	if _, err := r.backup(t, root, true, nil); err != nil {
		t.Fatalf("backup failed without installation_proxy: %v", err)
	}
	checkFolder(t, r, root)
	info, err := backupfmt.ReadInfo(filepath.Join(root, r.udid, "Info.plist"))
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Applications) != 0 || len(info.InstalledApplications) != 0 {
		t.Errorf("apps listed without installation_proxy: %v / %v", appKeys(info.Applications), info.InstalledApplications)
	}
}

// TestInfoPlistAppsSameAsIdevicebackup2: idevicebackup2's Info.plist from the same device
// names the same Applications and Installed Applications as Snapback's.
func TestInfoPlistAppsSameAsIdevicebackup2(t *testing.T) {
	bin := idevicebackup2(t)
	r := newRig(t, backupsim.Options{Seed: 7, Files: 40}, devicesim.DeviceConfig{})
	ours := t.TempDir()
	if _, err := r.backup(t, ours, true, nil); err != nil {
		t.Fatal(err)
	}
	theirs := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, bin, "-u", r.udid, "backup", "--full", theirs).CombinedOutput(); err != nil {
		t.Fatalf("idevicebackup2: %v\n%s", err, out)
	}
	a, err := backupfmt.ReadInfo(filepath.Join(ours, r.udid, "Info.plist"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := backupfmt.ReadInfo(filepath.Join(theirs, r.udid, "Info.plist"))
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Applications) == 0 || !reflect.DeepEqual(appKeys(a.Applications), appKeys(b.Applications)) {
		t.Errorf("Applications: snapback %v, idevicebackup2 %v", appKeys(a.Applications), appKeys(b.Applications))
	}
	for id, v := range b.Applications {
		theirsApp, _ := v.(map[string]any)
		oursApp, _ := a.Applications[id].(map[string]any)
		for _, k := range []string{"ApplicationSINF", "iTunesMetadata", "PlaceholderIcon"} {
			x, _ := oursApp[k].([]byte)
			y, _ := theirsApp[k].([]byte)
			if !bytes.Equal(x, y) {
				t.Errorf("%s %s: snapback %d bytes, idevicebackup2 %d bytes", id, k, len(x), len(y))
			}
		}
	}
	if !reflect.DeepEqual(sortedCopy(a.InstalledApplications), sortedCopy(b.InstalledApplications)) {
		t.Errorf("Installed Applications: snapback %v, idevicebackup2 %v", a.InstalledApplications, b.InstalledApplications)
	}
	if !reflect.DeepEqual(appKeysBytes(a.ITunesFiles), appKeysBytes(b.ITunesFiles)) {
		t.Errorf("iTunes Files: snapback %v, idevicebackup2 %v", appKeysBytes(a.ITunesFiles), appKeysBytes(b.ITunesFiles))
	}
}

// TestRestoreWritesRestoreApplications: a restore puts the source Info.plist's Applications
// (XML) at /iTunesRestore/RestoreApplications.plist on the device; a failed restore
// removes it again.
func TestRestoreWritesRestoreApplications(t *testing.T) {
	r := newRig(t, backupsim.Options{Seed: 8, Files: 40, PasscodeRequired: new(bool)}, devicesim.DeviceConfig{})
	root := t.TempDir()
	if _, err := r.backup(t, root, true, nil); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(root, r.udid)
	info, err := backupfmt.ReadInfo(filepath.Join(src, "Info.plist"))
	if err != nil || len(info.Applications) == 0 {
		t.Fatalf("source Info.plist: %d apps, %v", len(info.Applications), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := Restore(ctx, RestoreRequest{UDID: r.udid, SourceDir: src, LockRetry: 10 * time.Millisecond}); err != nil {
		t.Fatalf("restore: %v", err)
	}
	b, ok := r.dev.AFCFile(restoreAppsPath)
	if !ok || !strings.HasPrefix(string(b), "<?xml") {
		t.Fatalf("RestoreApplications.plist: present %v, %q", ok, b[:min(len(b), 40)])
	}
	var got map[string]any
	if err := plistio.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, info.Applications) {
		t.Errorf("RestoreApplications.plist differs from the source's Applications: %v", appKeys(got))
	}

	// A restore that fails (the device drops the link mid-restore) must not leave the list
	// behind: the first restore's file is there now, so its absence proves the removal.
	r.dev.SetDropBackupAfter(64 << 10)
	if _, err := Restore(ctx, RestoreRequest{UDID: r.udid, SourceDir: src, LockRetry: 10 * time.Millisecond}); err == nil {
		t.Fatal("restore over a dropped link succeeded")
	}
	if _, ok := r.dev.AFCFile(restoreAppsPath); ok {
		t.Error("RestoreApplications.plist left behind after a failed restore")
	}
}

// TestIdevicebackup2WritesSameRestoreApplications: idevicebackup2 restoring a Snapback
// backup (without --skip-apps) writes a RestoreApplications.plist with the same content as
// Snapback's restore of the same folder.
func TestIdevicebackup2WritesSameRestoreApplications(t *testing.T) {
	bin := idevicebackup2(t)
	r := newRig(t, backupsim.Options{Seed: 9, Files: 40, PasscodeRequired: new(bool)}, devicesim.DeviceConfig{})
	root := t.TempDir()
	if _, err := r.backup(t, root, true, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-u", r.udid, "restore", "--system", "--settings", "--no-reboot", root).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Restore Successful") {
		t.Fatalf("idevicebackup2 restore: %v\n%s", err, out)
	}
	theirs, ok := r.dev.AFCFile(restoreAppsPath)
	if !ok {
		t.Fatalf("idevicebackup2 wrote no RestoreApplications.plist:\n%s", out)
	}
	r.dev.WriteAFCFile(restoreAppsPath, nil)
	if _, err := Restore(ctx, RestoreRequest{UDID: r.udid, SourceDir: filepath.Join(root, r.udid), LockRetry: 10 * time.Millisecond}); err != nil {
		t.Fatalf("restore: %v", err)
	}
	ours, _ := r.dev.AFCFile(restoreAppsPath)
	var a, b map[string]any
	if err := plistio.Unmarshal(ours, &a); err != nil {
		t.Fatalf("ours: %v", err)
	}
	if err := plistio.Unmarshal(theirs, &b); err != nil {
		t.Fatalf("theirs: %v", err)
	}
	if len(b) == 0 || !reflect.DeepEqual(a, b) {
		t.Errorf("RestoreApplications.plist: snapback %v, idevicebackup2 %v", appKeys(a), appKeys(b))
	}
}
