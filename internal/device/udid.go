package device

import "snapback/internal/lockdown"

// CanonicalUDID returns the one spelling of a UDID Snapback uses: lockdown's, with the dash
// that usbmuxd's serial-number form lacks (see lockdown.CanonicalUDID, which the simulated
// device uses too).
func CanonicalUDID(s string) string { return lockdown.CanonicalUDID(s) }
