package device

import (
	"context"
	"errors"
	"fmt"
	"net"

	"snapback/internal/plistio"
)

// Services that feed Info.plist's app list and icons (protocol.md §3.6).
const (
	ServiceInstallationProxy = "com.apple.mobile.installation_proxy"
	ServiceSpringBoard       = "com.apple.springboardservices"
)

const (
	// maxAppFrame caps one installation_proxy page or springboard reply. A page of a few
	// dozen apps with SINFs and metadata is well under 1 MiB; icons are tens of KiB.
	maxAppFrame = 8 << 20
	// maxBrowsePages and maxApps bound a Browse, so a device that never says Complete
	// cannot make the host loop or allocate forever.
	maxBrowsePages = 1000
	maxApps        = 10000
	// maxBrowseBytes caps the SINF and metadata kept from one Browse (each page alone may
	// be maxAppFrame); real ones are a few KiB per app.
	maxBrowseBytes = 64 << 20
)

// App is one user app as installation_proxy lists it.
type App struct {
	BundleID    string
	Version     string
	DisplayName string
	Path        string
	Container   string
	// SINF (the app's DRM info) and Metadata (its iTunesMetadata plist) are what Info.plist
	// records so a restore can reinstall the app; both are empty for apps not from the store.
	SINF     []byte
	Metadata []byte
}

// UserApps lists the device's user apps through installation_proxy's Browse, with the
// attributes idevicebackup2 asks for plus a few for display.
func (s *Session) UserApps(ctx context.Context) ([]App, error) {
	c, err := s.StartService(ctx, ServiceInstallationProxy, false)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return browseUserApps(ctx, c)
}

func browseUserApps(ctx context.Context, c net.Conn) ([]App, error) {
	defer bind(ctx, c)()
	req := map[string]any{
		"Command": "Browse",
		"ClientOptions": map[string]any{
			"ApplicationType": "User",
			"ReturnAttributes": []any{"CFBundleIdentifier", "CFBundleVersion", "CFBundleDisplayName",
				"ApplicationSINF", "iTunesMetadata", "Path", "Container"},
		},
	}
	if err := plistio.WritePlist(c, req, plistio.XML); err != nil {
		return nil, ctxErr(ctx, fmt.Errorf("installation_proxy browse: %w", err))
	}
	var apps []App
	kept := 0
	for range maxBrowsePages {
		var page struct {
			Status      string
			Error       string
			CurrentList []map[string]any
		}
		if err := plistio.ReadPlist(c, maxAppFrame, &page); err != nil {
			return nil, ctxErr(ctx, fmt.Errorf("installation_proxy browse: %w", err))
		}
		if page.Error != "" {
			return nil, fmt.Errorf("installation_proxy browse: %s", page.Error)
		}
		for _, e := range page.CurrentList {
			id, _ := e["CFBundleIdentifier"].(string)
			if id == "" {
				continue
			}
			a := App{BundleID: id}
			a.Version, _ = e["CFBundleVersion"].(string)
			a.DisplayName, _ = e["CFBundleDisplayName"].(string)
			a.Path, _ = e["Path"].(string)
			a.Container, _ = e["Container"].(string)
			a.SINF, _ = e["ApplicationSINF"].([]byte)
			a.Metadata, _ = e["iTunesMetadata"].([]byte)
			kept += len(a.SINF) + len(a.Metadata)
			apps = append(apps, a)
		}
		if len(apps) > maxApps || kept > maxBrowseBytes {
			return nil, fmt.Errorf("installation_proxy browse: more than %d apps or %d bytes", maxApps, maxBrowseBytes)
		}
		if page.Status == "Complete" {
			return apps, nil
		}
	}
	return nil, errors.New("installation_proxy browse: no Complete status")
}

// Icons fetches each bundle's home-screen icon (PNG) through springboardservices. Bundles
// without an icon are missing from the map.
func (s *Session) Icons(ctx context.Context, bundles []string) (map[string][]byte, error) {
	c, err := s.StartService(ctx, ServiceSpringBoard, false)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	defer bind(ctx, c)()
	out := map[string][]byte{}
	for _, b := range bundles {
		if err := plistio.WritePlist(c, map[string]any{"command": "getIconPNGData", "bundleId": b}, plistio.Binary); err != nil {
			return out, ctxErr(ctx, fmt.Errorf("springboardservices: %w", err))
		}
		var resp struct {
			PngData []byte `plist:"pngData"`
		}
		if err := plistio.ReadPlist(c, maxAppFrame, &resp); err != nil {
			return out, ctxErr(ctx, fmt.Errorf("springboardservices: %w", err))
		}
		if len(resp.PngData) > 0 {
			out[b] = resp.PngData
		}
	}
	return out, nil
}
