//go:build !darwin && !windows

package tray

import (
	"fmt"
	"time"

	"fyne.io/systray"
	"github.com/godbus/dbus/v5"

	"snapback/icons"
)

func setIcon(s icons.State) { systray.SetIcon(icons.For(s, icons.Linux)) }

// setTooltip also sets nothing else: on Linux the SNI ToolTip property carries it.
func setTooltip(s string) { systray.SetTooltip(s) }

// setTitle names the item for SNI hosts that show the title instead of a tooltip.
func setTitle(s string) { systray.SetTitle(s) }

// submenuPause is slept after creating a submenu parent, before its children (see rebuild).
const submenuPause time.Duration = 10 * time.Millisecond

// runLoop runs systray's Linux loop itself rather than through systray.Run, whose loop is only
// start, wait, end: start returns once the item's properties are exported, so exported can
// republish what onReady set while the export was under way (see Tray.republish). It returns
// once done is closed.
func runLoop(onReady, onExit, exported func(), done <-chan struct{}) {
	start, end := systray.RunWithExternalLoop(onReady, onExit)
	start()
	exported()
	<-done
	end()
}

// checkHost connects to the session bus systray will use (dbus.SessionBus is shared, so
// systray gets this connection) and asks whether a StatusNotifierWatcher, the panel's side
// of the tray protocol, owns its name. systray re-registers whenever a watcher appears.
func checkHost() (string, error) {
	conn, err := dbus.SessionBus()
	if err != nil {
		return "", fmt.Errorf("no D-Bus session bus to show the tray on: %w", err)
	}
	var has bool
	if err := conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, "org.kde.StatusNotifierWatcher").Store(&has); err != nil {
		return "", fmt.Errorf("ask the D-Bus session bus for a system tray: %w", err)
	}
	if !has {
		return "no system tray on this desktop yet (nothing owns org.kde.StatusNotifierWatcher; " +
			"GNOME needs the AppIndicator extension): backups and notifications go on, and the icon appears when a tray starts", nil
	}
	return "", nil
}
