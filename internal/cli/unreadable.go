package cli

import (
	"fmt"
	"io"

	"snapback/internal/app"
	"snapback/internal/mobilebackup2"
)

// printUnreadable tells the user, after a committed backup, which files the device could
// not read (the backup itself succeeded).
func printUnreadable(w io.Writer, list []mobilebackup2.UnreadableFile) {
	if len(list) == 0 {
		return
	}
	fmt.Fprintf(w, "Backed up; %s:\n", app.UnreadableText(len(list)))
	for i, u := range list {
		if i == 20 {
			fmt.Fprintf(w, "  … and %d more (snapback snapshots --json lists them)\n", len(list)-i)
			break
		}
		name := u.DevicePath
		if u.Domain != "" {
			name = u.Domain + "/" + u.RelativePath
		}
		fmt.Fprintf(w, "  %s: %s\n", name, u.Reason)
	}
}
