package app

import (
	"fmt"

	"snapback/internal/engine"
	"snapback/internal/store"
)

// Exceptions turns the files the device could not read into the snapshot's exceptions.
func Exceptions(res engine.Result) []store.Exception {
	var out []store.Exception
	for _, u := range res.Backup.Unreadable {
		p := u.RelativePath
		if p == "" {
			p = u.DevicePath
		}
		out = append(out, store.Exception{FileID: u.FileID, Domain: u.Domain, Path: p, Reason: u.Reason})
	}
	return out
}

// UnreadableText is how the user is told about files the device could not read, the same
// words in the CLI, the tray and notifications.
func UnreadableText(n int) string {
	if n == 1 {
		return "1 file could not be read by the device and is not in this backup"
	}
	return fmt.Sprintf("%d files could not be read by the device and are not in this backup", n)
}
