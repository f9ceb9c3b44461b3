//go:build !((dragonfly && cgo) || (freebsd && cgo) || linux || netbsd || openbsd)

package settings

// probeKeyring: macOS and Windows always have their keychain; a failure there is a refusal
// (locked Keychain, denied access) or something unexpected.
func probeKeyring() KeyringErrorKind { return KeyringFailed }

// haveSessionBus: there is no D-Bus to find on these systems; the keychain is always there.
func haveSessionBus() bool { return true }
