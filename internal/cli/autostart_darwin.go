package cli

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// launchAgentLabel is also the app bundle's CFBundleIdentifier (packaging/macos/Info.plist).
const launchAgentLabel = "org.snapback.Snapback"

// launchAgent implements autostart with a per-user LaunchAgent. launchd reads it at the next
// login; it is not bootstrapped now, because RunAtLoad would start a second tray at once.
type launchAgent struct{ path loginFile }

func newAutostart() (autostart, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return nil, fmt.Errorf("autostart: %w", err)
	}
	return launchAgent{path: loginFile(filepath.Join(home, "Library", "LaunchAgents", launchAgentLabel+".plist"))}, nil
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
	return l.path.write(plist)
}

func (l launchAgent) Disable() (string, error) { return l.path.remove() }

func (l launchAgent) Status() (bool, string, error) {
	data, ok, err := l.path.read()
	if err != nil {
		return false, "", err
	}
	if !ok {
		return false, "no " + string(l.path), nil
	}
	return strings.Contains(string(data), "<string>"+launchAgentLabel+"</string>"), string(l.path), nil
}
