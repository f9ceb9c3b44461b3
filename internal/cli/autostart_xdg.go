//go:build linux || freebsd || openbsd || netbsd

package cli

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// autostartFile is the entry's name; the .deb installs the system-wide one under the same name
// in /etc/xdg/autostart, so a per-user file of that name overrides it (XDG autostart spec).
const autostartFile = "snapback.desktop"

// xdgAutostart implements autostart with the freedesktop.org autostart spec.
type xdgAutostart struct {
	userDir    string   // $XDG_CONFIG_HOME/autostart
	systemDirs []string // $XDG_CONFIG_DIRS/*/autostart, most important first
}

func newAutostart() (autostart, error) {
	home := os.Getenv("XDG_CONFIG_HOME")
	if home == "" || !filepath.IsAbs(home) { // the spec says to ignore relative values
		h, err := os.UserHomeDir()
		if err != nil {
			return nil, fmt.Errorf("autostart: %w", err)
		}
		home = filepath.Join(h, ".config")
	}
	dirs := os.Getenv("XDG_CONFIG_DIRS")
	if dirs == "" {
		dirs = "/etc/xdg"
	}
	a := &xdgAutostart{userDir: filepath.Join(home, "autostart")}
	for _, d := range filepath.SplitList(dirs) {
		if filepath.IsAbs(d) {
			a.systemDirs = append(a.systemDirs, filepath.Join(d, "autostart"))
		}
	}
	return a, nil
}

func (a *xdgAutostart) userPath() loginFile {
	return loginFile(filepath.Join(a.userDir, autostartFile))
}

// systemEntry returns the first system-wide entry that exists, if any.
func (a *xdgAutostart) systemEntry() string {
	for _, d := range a.systemDirs {
		p := filepath.Join(d, autostartFile)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

func (a *xdgAutostart) Enable(exe string) (string, error) {
	entry := "[Desktop Entry]\n" +
		"Type=Application\n" +
		"Name=Snapback\n" +
		"GenericName=iPhone Backup\n" +
		"Comment=Back up iPhones and iPads automatically\n" +
		"Exec=" + desktopExec(exe, "tray") + "\n" +
		"Icon=snapback\n" +
		"Terminal=false\n" +
		"Categories=Utility;\n" +
		"X-GNOME-Autostart-enabled=true\n"
	return a.write(entry)
}

func (a *xdgAutostart) Disable() (string, error) {
	if sys := a.systemEntry(); sys != "" {
		// A system-wide entry can only be switched off per user by shadowing it with Hidden=true.
		return a.write("[Desktop Entry]\nType=Application\nName=Snapback\nExec=snapback tray\nHidden=true\n")
	}
	return a.userPath().remove()
}

func (a *xdgAutostart) Status() (bool, string, error) {
	if data, ok, err := a.userPath().read(); err != nil || ok {
		return ok && entryEnabled(data), string(a.userPath()), err
	}
	if sys := a.systemEntry(); sys != "" {
		data, _, err := loginFile(sys).read()
		if err != nil {
			return false, "", err
		}
		return entryEnabled(data), "system-wide " + sys, nil
	}
	return false, "no entry in " + a.userDir, nil
}

func (a *xdgAutostart) write(entry string) (string, error) { return a.userPath().write(entry) }

// entryEnabled applies the spec's rules: Hidden=true removes the entry, and GNOME's
// X-GNOME-Autostart-enabled=false switches it off.
func entryEnabled(data []byte) bool {
	sc := bufio.NewScanner(bytes.NewReader(data))
	inEntry := false
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "[") {
			inEntry = line == "[Desktop Entry]"
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !inEntry || !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if (k == "Hidden" && v == "true") || (k == "X-GNOME-Autostart-enabled" && v == "false") {
			return false
		}
	}
	return true
}

// desktopExec builds an Exec value: arguments with reserved characters are double-quoted with
// `"`, "`", "$" and "\" backslash-escaped inside, "%" is doubled (field codes), and then every
// backslash is escaped again because Exec is also a desktop-entry string.
func desktopExec(args ...string) string {
	quoted := make([]string, len(args))
	for i, a := range args {
		a = strings.ReplaceAll(a, "%", "%%")
		if a == "" || strings.ContainsAny(a, " \t\n\"'\\><~|&;$*?#()`") {
			var b strings.Builder
			b.WriteByte('"')
			for _, r := range a {
				if strings.ContainsRune("\"`$\\", r) {
					b.WriteByte('\\')
				}
				b.WriteRune(r)
			}
			b.WriteByte('"')
			a = b.String()
		}
		quoted[i] = strings.ReplaceAll(a, `\`, `\\`)
	}
	return strings.Join(quoted, " ")
}
