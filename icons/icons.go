// Package icons holds Snapback's tray and app icons, drawn by ./gen and embedded in the binary:
// colour PNGs for Linux panels, template PNGs (plus coloured light/dark variants) for the macOS
// menu bar, and ICO files for the Windows notification area.
package icons

//go:generate go run ./gen -out assets

import (
	"embed"
	"fmt"
)

//go:embed assets
var assets embed.FS

// State is what the tray icon shows.
type State int

// The icon states. Idle: nothing to do. Working: a backup runs. Attention: the user should act
// (passcode, approval, overdue, settings). Error: the last backup failed or the disk is missing.
const (
	Idle State = iota
	Working
	Attention
	Error
)

var stateNames = [...]string{"idle", "working", "attention", "error"}

func (s State) String() string {
	if s < 0 || int(s) >= len(stateNames) {
		return fmt.Sprintf("State(%d)", int(s))
	}
	return stateNames[s]
}

// Platform selects the file format and colouring of an icon.
type Platform int

// The platforms. Linux: 64 px colour PNG (the SNI host scales it). Windows: ICO with 16–48 px.
// MacTemplate: 32 px template PNG (16 pt @2x) that macOS tints for dark and light menu bars.
// MacLight and MacDark: coloured 32 px PNGs for light and dark menu bars.
const (
	Linux Platform = iota
	Windows
	MacTemplate
	MacLight
	MacDark
)

// For returns the icon for state s on platform p. Unknown values fall back to Idle and Linux,
// so the tray always has something to show.
func For(s State, p Platform) []byte {
	if s < 0 || int(s) >= len(stateNames) {
		s = Idle
	}
	name := stateNames[s]
	var path string
	switch p {
	case Windows:
		path = "assets/windows/" + name + ".ico"
	case MacTemplate:
		path = "assets/darwin/" + name + "-template.png"
	case MacLight:
		path = "assets/darwin/" + name + "-light.png"
	case MacDark:
		path = "assets/darwin/" + name + "-dark.png"
	default:
		path = "assets/linux/" + name + ".png"
	}
	return mustRead(path)
}

// App returns the plain application icon (no badge) as a size×size PNG; sizes 16, 32, 48, 64,
// 128, 256 and 512 exist. Notifications use it as their image.
func App(size int) []byte {
	return mustRead(fmt.Sprintf("assets/app/snapback-%d.png", size))
}

func mustRead(path string) []byte {
	b, err := assets.ReadFile(path)
	if err != nil {
		panic("icons: missing embedded asset " + path) // the generator test keeps this from happening
	}
	return b
}
