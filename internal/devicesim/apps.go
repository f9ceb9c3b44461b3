package devicesim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/png"
	"io"
	"net"

	"snapback/internal/plistio"
)

// Services beyond backup that hosts use to fill Info.plist (protocol.md §3.6).
const (
	serviceInstProxy   = "com.apple.mobile.installation_proxy"
	serviceSpringBoard = "com.apple.springboardservices"
)

// appServiceMaxFrame bounds one request to installation_proxy or springboardservices: real
// ones are a few hundred bytes.
const appServiceMaxFrame = 64 << 10

// browsePageSize is how many apps go in one BrowsingProgress page. Real devices page by a
// few dozen; a small page makes sure clients handle more than one.
const browsePageSize = 2

// appLister is what a BackupService implements to say which user apps the device has
// (backupsim.Device does: the same bundles as its AppDomain-<bundle> domains).
type appLister interface{ Apps() []map[string]any }

// apps returns the device's user apps, in a stable order.
func (d *Device) apps() []map[string]any {
	if a, ok := d.cfg.Backup.(appLister); ok {
		return a.Apps()
	}
	return nil
}

// serveInstProxy runs com.apple.mobile.installation_proxy: Browse only, the command
// idevicebackup2 and go-ios use for the user app list.
func (d *Device) serveInstProxy(ctx context.Context, rw io.ReadWriter) error {
	return servePlists(ctx, rw, "installation_proxy", plistio.XML, func(req map[string]any) []map[string]any {
		if cmd, _ := req["Command"].(string); cmd != "Browse" {
			return []map[string]any{{"Error": "UnknownCommand", "Status": "Complete"}}
		}
		opts, _ := req["ClientOptions"].(map[string]any)
		return browsePages(d.apps(), opts)
	})
}

// servePlists runs a request/reply service of plists (installation_proxy, springboardservices):
// each request read is answered with answer's replies, until the host closes the connection or
// ctx ends.
func servePlists(ctx context.Context, rw io.ReadWriter, name string, format plistio.Format, answer func(req map[string]any) []map[string]any) error {
	for ctx.Err() == nil {
		var req map[string]any
		if err := plistio.ReadPlist(rw, appServiceMaxFrame, &req); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("%s: %w", name, err)
		}
		for _, reply := range answer(req) {
			if err := plistio.WritePlist(rw, reply, format); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
	}
	return ctx.Err()
}

// browsePages answers one Browse: BrowsingProgress pages with CurrentIndex, CurrentAmount,
// Total and CurrentList, then Status Complete, as the real service does. ApplicationType
// filters (the simulated apps are all User apps); ReturnAttributes limits each entry's keys.
func browsePages(all []map[string]any, opts map[string]any) []map[string]any {
	var list []map[string]any
	if t, _ := opts["ApplicationType"].(string); t == "" || t == "User" || t == "Any" {
		list = all
	}
	var keep map[string]bool
	if attrs, ok := opts["ReturnAttributes"].([]any); ok {
		keep = map[string]bool{}
		for _, a := range attrs {
			if s, ok := a.(string); ok {
				keep[s] = true
			}
		}
	}
	var pages []map[string]any
	for i := 0; i < len(list); i += browsePageSize {
		chunk := list[i:min(i+browsePageSize, len(list))]
		cur := make([]any, 0, len(chunk))
		for _, app := range chunk {
			e := map[string]any{}
			for k, v := range app {
				if keep == nil || keep[k] {
					e[k] = v
				}
			}
			cur = append(cur, e)
		}
		pages = append(pages, map[string]any{
			"Status": "BrowsingProgress", "CurrentIndex": i, "CurrentAmount": len(chunk),
			"Total": len(list), "CurrentList": cur,
			"PercentComplete": (i + len(chunk)) * 100 / len(list),
		})
	}
	return append(pages, map[string]any{"Status": "Complete"})
}

// serveSpringBoard runs com.apple.springboardservices: getIconPNGData, which hosts use for
// Info.plist's PlaceholderIcon. Other commands get an empty reply.
func (d *Device) serveSpringBoard(ctx context.Context, rw io.ReadWriter) error {
	return servePlists(ctx, rw, "springboardservices", plistio.Binary, func(req map[string]any) []map[string]any {
		resp := map[string]any{}
		if cmd, _ := req["command"].(string); cmd == "getIconPNGData" {
			id, _ := req["bundleId"].(string)
			for _, app := range d.apps() {
				if app["CFBundleIdentifier"] == id {
					resp["pngData"] = appIcon(id)
				}
			}
		}
		return []map[string]any{resp}
	})
}

// appIcon is a small solid PNG whose colour follows the bundle ID, so icons are stable.
func appIcon(bundle string) []byte {
	sum := sha256.Sum256([]byte(bundle))
	img := image.NewNRGBA(image.Rect(0, 0, 8, 8))
	for y := range 8 {
		for x := range 8 {
			img.Set(x, y, color.NRGBA{sum[0], sum[1], sum[2], 0xff})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		panic(err) // encoding an in-memory image into a buffer cannot fail
	}
	return b.Bytes()
}

// seedITunesControl writes the /iTunes_Control/iTunes files the device starts with, so that
// hosts have something to copy into Info.plist's iTunes Files. Content follows the UDID.
func seedITunesControl(fs *afcFS, udid string) {
	sum := crc32.ChecksumIEEE([]byte(udid))
	prefs, err := plistio.Marshal(map[string]any{"SyncHostID": fmt.Sprintf("SIM-%08X", sum), "iPodPrefsVersion": 2}, plistio.Binary)
	if err != nil {
		panic(err) // a map of a string and an int always marshals
	}
	fs.writeFile("/iTunes_Control/iTunes/iTunesPrefs", prefs)
	fs.writeFile("/iTunes_Control/iTunes/IC-Info.sidb", fmt.Appendf(nil, "SIDB\x00\x01%08X", sum))
}
