package backupsim

import (
	"encoding/binary"
	"fmt"
	"strings"

	"snapback/internal/plistio"
)

// Apps returns the device's user apps as installation_proxy reports them (CFBundleIdentifier,
// CFBundleVersion, CFBundleDisplayName, ApplicationSINF, iTunesMetadata, Path, Container).
// They are the bundles whose AppDomain-<bundle> domains the backup holds, and the values are
// derived from the seed, so the same device always lists the same apps with the same bytes.
// devicesim serves them through com.apple.mobile.installation_proxy.
func (d *Device) Apps() []map[string]any {
	out := make([]map[string]any, 0, len(appBundles))
	for j, b := range appBundles {
		h := hash3(d.opts.Seed, uint64(j), 7)
		version := fmt.Sprintf("%d.%d", 1+h%9, h>>8%20)
		name := displayName(b)
		// A SINF is an opaque DRM blob; 64 seed-derived bytes behind a "sinf" tag stand in.
		sinf := []byte("\x00\x00\x00\x48sinf")
		for k := range uint64(8) {
			sinf = binary.BigEndian.AppendUint64(sinf, hash3(d.opts.Seed, uint64(j), 100+k))
		}
		meta, err := plistio.Marshal(map[string]any{
			"itemId":                  int64(300000000 + h%100000000),
			"itemName":                name,
			"bundleVersion":           version,
			"softwareVersionBundleId": b,
			"artistName":              "Simulated Developer",
			"kind":                    "software",
		}, plistio.Binary)
		if err != nil {
			// Marshalling a map of strings and ints cannot fail.
			panic(err)
		}
		out = append(out, map[string]any{
			"CFBundleIdentifier":  b,
			"CFBundleVersion":     version,
			"CFBundleDisplayName": name,
			"ApplicationType":     "User",
			"ApplicationSINF":     sinf,
			"iTunesMetadata":      meta,
			"Path":                fmt.Sprintf("/private/var/containers/Bundle/Application/%016X/%s.app", h, b[len(b)-min(len(b), 8):]),
			"Container":           fmt.Sprintf("/private/var/mobile/Containers/Data/Application/%016X", hash3(d.opts.Seed, uint64(j), 8)),
		})
	}
	return out
}

// displayName turns a bundle ID into a readable name: its last component, capitalised.
func displayName(bundle string) string {
	n := bundle[strings.LastIndexByte(bundle, '.')+1:]
	if n == "" {
		return bundle
	}
	return strings.ToUpper(n[:1]) + n[1:]
}
