// Package lockdown holds what the host (internal/device) and the simulated device
// (internal/devicesim) must agree on about lockdown pairing, as pure code with no I/O: the
// pair record usbmuxd stores for a device, and the one spelling of a UDID. One definition
// keeps the two sides from drifting apart, which a test against the simulator would not
// notice when both drift the same way.
package lockdown

import (
	"crypto/rand"
	"fmt"

	"snapback/internal/plistio"
)

// PairRecord is the host-side pairing record usbmuxd keeps for a device (protocol.md §4.1).
// Certificates and keys are PEM held as plist *data*, which is what go-ios and
// libimobiledevice decode.
type PairRecord struct {
	DeviceCertificate []byte
	HostCertificate   []byte
	HostPrivateKey    []byte
	RootCertificate   []byte
	RootPrivateKey    []byte
	HostID            string
	SystemBUID        string
	EscrowBag         []byte
	WiFiMACAddress    string
}

// Marshal returns the record as an XML plist, the form usbmuxd keeps in PairRecordData.
func (r PairRecord) Marshal() ([]byte, error) {
	b, err := plistio.Marshal(r, plistio.XML)
	if err != nil {
		return nil, fmt.Errorf("encode pair record: %w", err)
	}
	return b, nil
}

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

// NewUUID returns a random (version 4) UUID in upper case, the form lockdown uses for a
// pairing's HostID and SystemBUID and for session IDs.
func NewUUID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand panics instead)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%X-%X-%X-%X-%X", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
