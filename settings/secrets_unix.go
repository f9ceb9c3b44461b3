//go:build (dragonfly && cgo) || (freebsd && cgo) || linux || netbsd || openbsd

package settings

import "github.com/godbus/dbus/v5"

// probeKeyring finds out why a Secret Service call failed: no session bus, no provider of
// org.freedesktop.secrets (neither running nor activatable), or a provider that refused
// (most often a locked keyring). It uses a private connection so the shared one go-keyring
// uses is left alone.
func probeKeyring() KeyringErrorKind {
	conn, err := dbus.SessionBusPrivateNoAutoStartup()
	if err != nil {
		return KeyringNoSessionBus
	}
	defer conn.Close()
	// A private connection must authenticate and say Hello before it can call anything.
	if err := conn.Auth(nil); err != nil {
		return KeyringNoSessionBus
	}
	if err := conn.Hello(); err != nil {
		return KeyringNoSessionBus
	}
	const name = "org.freedesktop.secrets"
	var owned bool
	if err := conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, name).Store(&owned); err == nil && owned {
		return KeyringLocked
	}
	var activatable []string
	if err := conn.BusObject().Call("org.freedesktop.DBus.ListActivatableNames", 0).Store(&activatable); err == nil {
		for _, n := range activatable {
			if n == name {
				// It can be started on demand, so it was there but refused: locked.
				return KeyringLocked
			}
		}
	}
	return KeyringNoService
}

// haveSessionBus reports whether a session bus can be found without starting one. Without
// this check godbus (inside go-keyring) runs dbus-launch when no bus is known, which leaves a
// stray dbus-daemon (and an activated, locked gnome-keyring) behind on headless machines.
func haveSessionBus() bool {
	conn, err := dbus.SessionBusPrivateNoAutoStartup()
	if err != nil {
		return false
	}
	conn.Close()
	return true
}
