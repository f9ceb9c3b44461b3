//go:build pins

// Package pins keeps the project's pinned dependencies in go.mod while the packages that use
// them are being written; `go mod tidy` honours build-tagged files. It is never built.
package pins

import (
	_ "fyne.io/systray"
	_ "github.com/danielpaulus/go-ios/ios"
	_ "github.com/fsnotify/fsnotify"
	_ "github.com/gen2brain/beeep"
	_ "github.com/gofrs/flock"
	_ "github.com/schollz/progressbar/v3"
	_ "github.com/spf13/viper"
	_ "github.com/zalando/go-keyring"
	_ "golang.org/x/sys/unix"
	_ "howett.net/plist"
	_ "modernc.org/sqlite"
)
