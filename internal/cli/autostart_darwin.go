package cli

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"snapback/internal/atomicfile"
)

// launchAgentLabel is also the app bundle's CFBundleIdentifier (packaging/macos/Info.plist).
const launchAgentLabel = "org.snapback.Snapback"

// launchAgent implements autostart with a per-user LaunchAgent. launchd reads it at the next
// login; it is not bootstrapped now, because RunAtLoad would start a second tray at once.
type launchAgent struct{ path string }

func newAutostart() (autostart, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return nil, fmt.Errorf("autostart: %w", err)
	}
	return launchAgent{path: filepath.Join(home, "Library", "LaunchAgents", launchAgentLabel+".plist")}, nil
}

func (l launchAgent) Enable(exe string) (string, error) {
	var esc bytes.Buffer
	_ = xml.EscapeText(&esc, []byte(exe))
	plist := `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>Label</key>
	<string>` + launchAgentLabel + `</string>
	<key>ProgramArguments</key>
	<array>
		<string>` + esc.String() + `</string>
		<string>tray</string>
	</array>
	<key>RunAtLoad</key>
	<true/>
	<key>KeepAlive</key>
	<dict>
		<key>SuccessfulExit</key>
		<false/>
	</dict>
	<key>LimitLoadToSessionType</key>
	<string>Aqua</string>
	<key>ProcessType</key>
	<string>Interactive</string>
</dict>
</plist>
`
	if err := os.MkdirAll(filepath.Dir(l.path), 0o755); err != nil {
		return "", fmt.Errorf("autostart: %w", err)
	}
	if err := atomicfile.WriteFile(l.path, []byte(plist), 0o644); err != nil {
		return "", fmt.Errorf("autostart: %w", err)
	}
	return l.path, nil
}

func (l launchAgent) Disable() (string, error) {
	if err := os.Remove(l.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("autostart: %w", err)
	}
	return "removed " + l.path, nil
}

func (l launchAgent) Status() (bool, string, error) {
	data, err := os.ReadFile(l.path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, "no " + l.path, nil
	}
	if err != nil {
		return false, "", fmt.Errorf("autostart: %w", err)
	}
	return strings.Contains(string(data), "<string>"+launchAgentLabel+"</string>"), l.path, nil
}
