package engine

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"time"

	"snapback/internal/backupfmt"
	"snapback/internal/device"
	"snapback/internal/plistio"
)

// infoExtras is what Info.plist holds beyond lockdown values (backup-format.md §1.2): the
// app list from installation_proxy and springboardservices, and files read over AFC. Every
// part is optional: a device that refuses a service still gets backed up, as with
// idevicebackup2.
type infoExtras struct {
	Applications map[string]any // bundle ID → {ApplicationSINF, iTunesMetadata, PlaceholderIcon}
	Installed    []string       // user app bundle IDs
	ITunesFiles  map[string][]byte
	IBooksData2  []byte
}

// appQueryTimeout bounds the app list and icon queries, so a stuck service delays the
// backup by at most this much instead of stalling it.
const appQueryTimeout = 30 * time.Second

// readApps fills the app part of x from the session. Failures are logged, never returned:
// idevicebackup2 writes Info.plist without apps when installation_proxy is unavailable.
func readApps(ctx context.Context, sess *device.Session, log *slog.Logger, x *infoExtras) {
	ctx, cancel := context.WithTimeout(ctx, appQueryTimeout)
	defer cancel()
	apps, err := sess.UserApps(ctx)
	if err != nil {
		log.Warn("app list unavailable; Info.plist will list no apps", "err", err)
		return
	}
	x.Installed = make([]string, 0, len(apps))
	var withSINF []string
	for _, a := range apps {
		x.Installed = append(x.Installed, a.BundleID)
		// Only store apps have SINF and metadata; only they can be reinstalled on restore,
		// so idevicebackup2 records only them under Applications.
		if len(a.SINF) > 0 && len(a.Metadata) > 0 {
			withSINF = append(withSINF, a.BundleID)
		}
	}
	icons, err := sess.Icons(ctx, withSINF)
	if err != nil {
		log.Debug("app icons unavailable", "err", err)
	}
	x.Applications = map[string]any{}
	for _, a := range apps {
		if len(a.SINF) == 0 || len(a.Metadata) == 0 {
			continue
		}
		e := map[string]any{"ApplicationSINF": a.SINF, "iTunesMetadata": a.Metadata}
		if png := icons[a.BundleID]; len(png) > 0 {
			e["PlaceholderIcon"] = png
		}
		x.Applications[a.BundleID] = e
	}
}

// iTunesFileNames are the /iTunes_Control/iTunes files libimobiledevice copies into
// Info.plist's iTunes Files.
var iTunesFileNames = []string{
	"ApertureAlbumPrefs", "IC-Info.sidb", "IC-Info.sidv", "PhotosFolderAlbums", "PhotosFolderName",
	"PhotosFolderPrefs", "VoiceMemos.plist", "iPhotoAlbumPrefs", "iTunesApplicationIDs", "iTunesPrefs",
	"iTunesPrefs.plist",
}

// maxInfoFile caps each file copied into Info.plist; real ones are a few KiB to a few MiB.
const maxInfoFile = 16 << 20

// readAFCFiles fills iTunes Files and iBooks Data 2 from the device. Missing files are
// normal (most devices have only some); other errors are logged and the file skipped.
func readAFCFiles(ctx context.Context, afc *device.AFC, log *slog.Logger, x *infoExtras) {
	ctx, cancel := context.WithTimeout(ctx, appQueryTimeout)
	defer cancel()
	for _, name := range iTunesFileNames {
		b, err := afc.ReadFile(ctx, "/iTunes_Control/iTunes/"+name, maxInfoFile)
		if err != nil {
			if !device.IsNotFound(err) {
				log.Debug("iTunes file unreadable", "name", name, "err", err)
			}
			if ctx.Err() != nil {
				return
			}
			continue
		}
		if len(b) == 0 {
			continue
		}
		if x.ITunesFiles == nil {
			x.ITunesFiles = map[string][]byte{}
		}
		x.ITunesFiles[name] = b
	}
	if b, err := afc.ReadFile(ctx, "/Books/iBooksData2.plist", maxInfoFile); err == nil && len(b) > 0 {
		x.IBooksData2 = b
	} else if err != nil && !device.IsNotFound(err) {
		log.Debug("iBooks data unreadable", "err", err)
	}
}

// Where a restore tells the device which apps to reinstall (protocol.md §7.4).
const (
	restoreAppsDir  = "/iTunesRestore"
	restoreAppsPath = restoreAppsDir + "/RestoreApplications.plist"
)

// writeRestoreApps writes the source backup's Applications as XML to
// /iTunesRestore/RestoreApplications.plist, as idevicebackup2 does before Restore. It
// reports whether it wrote the file; a source without apps (or without a readable
// Info.plist, which the device will then refuse anyway) writes nothing.
func writeRestoreApps(ctx context.Context, afc *device.AFC, source string, log *slog.Logger) (bool, error) {
	info, err := backupfmt.ReadInfo(filepath.Join(source, "Info.plist"))
	if err != nil {
		log.Warn("source Info.plist unreadable; no apps to reinstall", "err", err)
		return false, nil
	}
	if len(info.Applications) == 0 {
		return false, nil
	}
	b, err := plistio.Marshal(info.Applications, plistio.XML)
	if err != nil {
		return false, err
	}
	if err := afc.MkDir(ctx, restoreAppsDir); err != nil {
		return false, err
	}
	if err := afc.WriteFile(ctx, restoreAppsPath, b); err != nil {
		return false, err
	}
	return true, nil
}

// removeRestoreApps deletes the app list after a failed restore, so the device does not
// act on it later. It runs even when ctx is cancelled.
func removeRestoreApps(ctx context.Context, afc *device.AFC, log *slog.Logger) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := afc.Remove(cctx, restoreAppsPath); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		log.Debug("remove RestoreApplications.plist", "err", err)
	}
}
