package tray

import (
	"time"

	"fyne.io/systray"

	"snapback/icons"
)

func setIcon(s icons.State) { systray.SetIcon(icons.For(s, icons.Windows)) }

// setTooltip truncates to the notification area's limit (NOTIFYICONDATA.szTip holds 128
// UTF-16 units including the terminator); longer text would be cut mid-word by Windows.
func setTooltip(s string) {
	const limit = 127
	r := []rune(s)
	if len(r) > limit {
		s = string(r[:limit-1]) + "…"
	}
	systray.SetTooltip(s)
}

// submenuPause is slept after creating a submenu parent, before its children (see rebuild).
const submenuPause time.Duration = 0

// runLoop is systray.Run: on Windows the loop must own the main thread, and systray
// starts onReady only once the icon exists, so nothing onReady sets is lost.
func runLoop(t *Tray) { systray.Run(t.onReady, t.stop) }

// checkHost has nothing to check: the menu bar and the notification area are always there.
func checkHost() (string, error) { return "", nil }
