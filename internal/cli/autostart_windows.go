package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/windows/registry"
)

const (
	runKey   = `Software\Microsoft\Windows\CurrentVersion\Run`
	runValue = "Snapback"
)

// runKeyAutostart implements autostart with the per-user Run registry value, pure Go (no COM
// shortcut in the Startup folder, which would need cgo).
type runKeyAutostart struct{}

func newAutostart() (autostart, error) { return runKeyAutostart{}, nil }

func (runKeyAutostart) Enable(exe string) (string, error) {
	// Prefer the GUI-subsystem build next to the console one, so no console window flashes at
	// login (packaging/windows/build.sh builds both).
	if gui := filepath.Join(filepath.Dir(exe), "snapbackw.exe"); !strings.EqualFold(exe, gui) {
		if _, err := os.Stat(gui); err == nil {
			exe = gui
		}
	}
	k, _, err := registry.CreateKey(registry.CURRENT_USER, runKey, registry.SET_VALUE)
	if err != nil {
		return "", fmt.Errorf("autostart: open HKCU\\%s: %w", runKey, err)
	}
	defer k.Close()
	if err := k.SetStringValue(runValue, `"`+exe+`" tray`); err != nil {
		return "", fmt.Errorf("autostart: %w", err)
	}
	return `HKCU\` + runKey + `\` + runValue, nil
}

func (runKeyAutostart) Disable() (string, error) {
	k, err := registry.OpenKey(registry.CURRENT_USER, runKey, registry.SET_VALUE)
	if errors.Is(err, registry.ErrNotExist) {
		return "no Run key", nil
	}
	if err != nil {
		return "", fmt.Errorf("autostart: open HKCU\\%s: %w", runKey, err)
	}
	defer k.Close()
	if err := k.DeleteValue(runValue); err != nil && !errors.Is(err, registry.ErrNotExist) {
		return "", fmt.Errorf("autostart: %w", err)
	}
	return `removed HKCU\` + runKey + `\` + runValue, nil
}

func (runKeyAutostart) Status() (bool, string, error) {
	k, err := registry.OpenKey(registry.CURRENT_USER, runKey, registry.QUERY_VALUE)
	if errors.Is(err, registry.ErrNotExist) {
		return false, "no Run key", nil
	}
	if err != nil {
		return false, "", fmt.Errorf("autostart: open HKCU\\%s: %w", runKey, err)
	}
	defer k.Close()
	v, _, err := k.GetStringValue(runValue)
	if errors.Is(err, registry.ErrNotExist) {
		return false, `no HKCU\` + runKey + `\` + runValue, nil
	}
	if err != nil {
		return false, "", fmt.Errorf("autostart: %w", err)
	}
	return true, `HKCU\` + runKey + `\` + runValue + " = " + v, nil
}
