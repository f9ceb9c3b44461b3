//go:build linux

package store

import (
	"bufio"
	"os"
	"strings"
)

// fstabTargets returns the mount targets listed in an fstab file (nil if unreadable). A
// disk listed there but not mounted leaves an empty directory that must not receive backups.
func fstabTargets(path string) map[string]bool {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	out := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || strings.HasPrefix(fields[0], "#") || fields[1] == "/" || fields[1] == "none" {
			continue
		}
		out[strings.ReplaceAll(fields[1], `\040`, " ")] = true
	}
	return out
}

const defaultFstab = "/etc/fstab"
