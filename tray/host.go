package tray

// CheckHost tells, before Run, whether this desktop can show the tray. An error means it
// cannot at all (Linux with no D-Bus session bus, as over SSH or on a server): systray would
// only log that and crash when it quits. A note means the icon will not show until a tray
// host starts (a Linux desktop with no StatusNotifierItem watcher, as GNOME without the
// AppIndicator extension); the tray still runs, and its icon appears once a host starts.
func CheckHost() (note string, err error) { return checkHost() }
