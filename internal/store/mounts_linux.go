//go:build linux

package store

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// fstabTargets returns the mount targets listed in an fstab file (nil if unreadable). A
// disk listed there but not mounted leaves an empty directory that must not receive backups.
// This only helps a location's first use; once used, the recorded identity decides.
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
		out[unescapeMount(fields[1])] = true
	}
	return out
}

const defaultFstab = "/etc/fstab"

// mountEntry is one line of /proc/self/mountinfo (proc(5)).
type mountEntry struct {
	dev    string // major:minor
	mount  string
	fstype string
	source string
}

// mountOf finds the mount that holds dir, whose device is dev (major:minor): the longest
// mount point that is a prefix of dir's real path with that device. mountinfo lists every
// mount this process sees, whoever made it (fstab, udisks, systemd, mount by hand).
func mountOf(dir, dev string) (mountEntry, error) {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return mountEntry{}, err
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return mountEntry{}, err
	}
	defer f.Close()
	var best mountEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		m, ok := parseMountinfo(sc.Text())
		if !ok || m.dev != dev || !under(real, m.mount) {
			continue
		}
		if len(m.mount) >= len(best.mount) {
			best = m
		}
	}
	if err := sc.Err(); err != nil {
		return mountEntry{}, err
	}
	if best.mount == "" {
		return best, fmt.Errorf("no mount of device %s holds %s", dev, real)
	}
	return best, nil
}

// parseMountinfo splits "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw".
func parseMountinfo(line string) (mountEntry, bool) {
	pre, post, ok := strings.Cut(line, " - ")
	if !ok {
		return mountEntry{}, false
	}
	a, b := strings.Fields(pre), strings.Fields(post)
	if len(a) < 5 || len(b) < 2 {
		return mountEntry{}, false
	}
	return mountEntry{dev: a[2], mount: unescapeMount(a[4]), fstype: b[0], source: unescapeMount(b[1])}, true
}

// unescapeMount undoes the octal escapes (\040 for a space) of mount tables.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func under(path, dir string) bool {
	return dir == "/" || path == dir || strings.HasPrefix(path, dir+"/")
}

// uuidOf returns the filesystem UUID of the block device dev, from the links udev keeps in
// /dev/disk/by-uuid; "" when there is no such link (no udev, or a filesystem without UUID).
func uuidOf(dev uint64) string {
	entries, err := os.ReadDir("/dev/disk/by-uuid")
	if err != nil {
		return ""
	}
	for _, e := range entries {
		var st unix.Stat_t
		if unix.Stat(filepath.Join("/dev/disk/by-uuid", e.Name()), &st) == nil &&
			st.Mode&unix.S_IFMT == unix.S_IFBLK && uint64(st.Rdev) == dev {
			return e.Name()
		}
	}
	return ""
}

// platformIdentity fills in what only Linux tells: the mount (mountinfo) and the UUID.
func platformIdentity(dir string, st *unix.Stat_t, id *FSIdentity) {
	dev := uint64(st.Dev)
	id.Dev = fmt.Sprintf("%d:%d", unix.Major(dev), unix.Minor(dev))
	if m, err := mountOf(dir, id.Dev); err == nil {
		id.Mount, id.Type, id.Source = m.mount, m.fstype, m.source
	}
	id.UUID = uuidOf(dev)
}
