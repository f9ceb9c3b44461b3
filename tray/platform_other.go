//go:build !darwin && !windows

package tray

import (
	"time"

	"fyne.io/systray"

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
