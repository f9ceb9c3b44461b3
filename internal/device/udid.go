package device

// CanonicalUDID returns the one spelling of a UDID Snapback uses for folders, pair records,
// TargetIdentifier and Info.plist: lockdown's. usbmuxd can list a device under its USB
// serial, 24 hex digits without the dash (the kernel log in libimobiledevice #1381 shows
// "SerialNumber: 00008030001A35E22E38802E" for a device whose UDID is
// 00008030-001A35E22E38802E); that form gets the dash after the 8-digit chip ID. Older
// 40-hex-digit UDIDs and anything else are returned unchanged.
func CanonicalUDID(s string) string {
	if len(s) != 24 {
		return s
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return s
		}
	}
	return s[:8] + "-" + s[8:]
}
