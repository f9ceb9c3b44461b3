package tray

import (
	"time"

	"fyne.io/systray"

	"snapback/icons"
)

// setIcon uses template images so macOS tints the icon for dark and light menu bars; the
// coloured light variant is the fallback systray uses where templates are not supported.
func setIcon(s icons.State) {
	systray.SetTemplateIcon(icons.For(s, icons.MacTemplate), icons.For(s, icons.MacLight))
}

func setTooltip(s string) { systray.SetTooltip(s) }

// submenuPause is slept after creating a submenu parent, before its children (see rebuild).
const submenuPause time.Duration = 0

// runLoop is systray.Run: on macOS the loop must own the main thread, and systray
// starts onReady only once the icon exists, so nothing onReady sets is lost.
// It sets no title: on macOS a title is drawn as text beside the icon in the menu bar.
func runLoop(t *Tray) { systray.Run(t.onReady, t.stop) }

// checkHost has nothing to check: the menu bar and the notification area are always there.
func checkHost() (string, error) { return "", nil }
