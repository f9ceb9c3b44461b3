package devicesim

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"snapback/internal/atomicfile"
	"snapback/internal/plistio"
)

// The trust store of a simulated device: which hosts may start a lockdown session, and the
// "Trust This Computer?" dialog a Pair request raises (protocol.md §4.4, real-devices.md
// row 1). Evidence for the answers:
//   - PairingDialogResponsePending until the user answers, UserDeniedPairing after "Don't
//     Trust", PasswordProtected while the device is locked: libimobiledevice
//     lockdownd_strtoerr / idevicepair's messages ("Please accept the trust dialog on the
//     screen of device ..., then attempt to pair again."), go-ios ios/pair.go
//     isPairingDialogOpen ("Please accept the PairingDialog on the device and run pairing
//     again!"), pymobiledevice3 lockdown.py (PairingDialogResponsePendingError,
//     UserDeniedPairingError, PasswordRequiredError).
//   - Pair answers EscrowBag (and the host saves the record through usbmuxd
//     SavePairRecord): libimobiledevice lockdownd_do_pair, go-ios Pair → savePair.
//   - ValidatePair / Unpair with a HostID the device does not know: InvalidHostID
//     (pymobiledevice3 catches InvalidHostIDError on StartSession for the same cause).

// trustedHost is one host the device trusts (a Pair it accepted).
type trustedHost struct {
	HostID          string
	RootCertificate []byte // PEM
	HostCertificate []byte // PEM
	EscrowBag       []byte
}

// trustDialog is the state of the Trust dialog on the device's screen.
type trustDialog struct {
	shown     time.Time // zero: not on screen
	lockedFor int       // Pair requests still answered with PasswordProtected
	raised    int64     // how often the dialog appeared
}

// TrustDialogs counts how often the device showed "Trust This Computer?".
func (d *Device) TrustDialogs() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dialog.raised
}

// TrustedHosts returns the HostIDs the device trusts.
func (d *Device) TrustedHosts() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]string, 0, len(d.trusted))
	for _, h := range d.trusted {
		out = append(out, h.HostID)
	}
	return out
}

// Untrust forgets every host, as Settings → General → Transfer or Reset → Reset Location &
// Privacy does: saved pair records stop working (StartSession answers InvalidHostID).
func (d *Device) Untrust() {
	d.mu.Lock()
	d.trusted = nil
	d.saveTrustLocked()
	d.mu.Unlock()
}

// trustedHostLocked returns the trusted host with this id; d.mu must be held.
func (d *Device) trustedHostLocked(id string) (trustedHost, bool) {
	for _, h := range d.trusted {
		if h.HostID == id {
			return h, true
		}
	}
	return trustedHost{}, false
}

func (d *Device) trustedHost(id string) (trustedHost, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.trustedHostLocked(id)
}

// trustedCerts returns the PEM root and host certificates of every trusted host.
func (d *Device) trustedCerts() [][]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out [][]byte
	for _, h := range d.trusted {
		out = append(out, h.RootCertificate, h.HostCertificate)
	}
	return out
}

// trustFile is where a device with a state dir keeps the hosts it trusts.
func (d *Device) trustFile() string {
	if d.sim.opts.StateDir == "" {
		return ""
	}
	return filepath.Join(d.sim.opts.StateDir, "devices", d.UDID(), "trusted.plist")
}

// loadTrust reads the trusted hosts saved by an earlier run. ok is false when there is no
// such file (the caller then starts from the configuration).
func (d *Device) loadTrust() (bool, error) {
	p := d.trustFile()
	if p == "" {
		return false, nil
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read trusted hosts: %w", err)
	}
	var list []trustedHost
	if err := plistio.Unmarshal(b, &list); err != nil {
		return false, fmt.Errorf("read %s: %w", p, err)
	}
	d.trusted = list
	return true, nil
}

// saveTrustLocked persists the trusted hosts (best effort: the in-memory state is what
// answers requests; a failed save only loses trust across a restart, which a real device
// can do too). d.mu must be held.
func (d *Device) saveTrustLocked() {
	p := d.trustFile()
	if p == "" {
		return
	}
	list := d.trusted
	if list == nil {
		list = []trustedHost{}
	}
	b, err := plistio.Marshal(list, plistio.XML)
	if err == nil {
		err = os.MkdirAll(filepath.Dir(p), 0o700)
	}
	if err == nil {
		err = atomicfile.WriteFile(p, b, 0o600)
	}
	if err != nil {
		d.sim.log.Debug("save trusted hosts", "udid", d.UDID(), "err", err)
	}
}

// pairRequestRecord extracts the PairRecord dictionary of a Pair/ValidatePair/Unpair
// request. libimobiledevice and go-ios send certificates as data; strings are accepted too.
func pairRequestRecord(req map[string]any) (trustedHost, []byte, bool) {
	pr, ok := req["PairRecord"].(map[string]any)
	if !ok {
		return trustedHost{}, nil, false
	}
	bytesOf := func(k string) []byte {
		switch v := pr[k].(type) {
		case []byte:
			return v
		case string:
			return []byte(v)
		}
		return nil
	}
	id, _ := pr["HostID"].(string)
	return trustedHost{HostID: id, RootCertificate: bytesOf("RootCertificate"), HostCertificate: bytesOf("HostCertificate")},
		bytesOf("DeviceCertificate"), id != ""
}

// handlePairing answers Pair, ValidatePair and Unpair. sessionHost is the HostID of the
// connection's session ("" without one).
func (d *Device) handlePairing(name string, req map[string]any, sessionHost string) map[string]any {
	host, devCert, ok := pairRequestRecord(req)
	switch name {
	case "ValidatePair":
		if !ok {
			return lockdownError(req, name, "InvalidPairRecord")
		}
		if _, trusted := d.trustedHost(host.HostID); !trusted {
			return lockdownError(req, name, "InvalidHostID")
		}
		return map[string]any{"Request": name}
	case "Unpair":
		id := host.HostID
		if id == "" {
			id = sessionHost
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		for i, h := range d.trusted {
			if h.HostID == id {
				d.trusted = append(d.trusted[:i:i], d.trusted[i+1:]...)
				d.saveTrustLocked()
				return map[string]any{"Request": name}
			}
		}
		return lockdownError(req, name, "InvalidHostID")
	}
	// Pair.
	if !ok || len(host.RootCertificate) == 0 || len(host.HostCertificate) == 0 || len(devCert) == 0 {
		return lockdownError(req, name, "InvalidPairRecord")
	}
	if err := d.checkDeviceCertificate(devCert); err != nil {
		d.sim.log.Debug("pair refused", "udid", d.UDID(), "err", err)
		return lockdownError(req, name, "InvalidPairRecord")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if h, trusted := d.trustedHostLocked(host.HostID); trusted {
		// Pairing again with a known HostID: the device keeps its trust and its bag.
		return map[string]any{"Request": name, "EscrowBag": h.EscrowBag, "WiFiMACAddress": d.cfg.Identity.WiFiAddress}
	}
	if d.dialog.lockedFor > 0 {
		// A locked device shows no dialog; the user has to unlock it first. The simulated
		// user does so as soon as the host has been told.
		d.dialog.lockedFor--
		return lockdownError(req, name, "PasswordProtected")
	}
	now := time.Now()
	if d.dialog.shown.IsZero() {
		d.dialog.shown = now
		d.dialog.raised++
	}
	if now.Sub(d.dialog.shown) < d.cfg.TrustDelay {
		return lockdownError(req, name, "PairingDialogResponsePending")
	}
	d.dialog.shown = time.Time{} // answered: the dialog is gone
	if d.cfg.TrustDeny {
		return lockdownError(req, name, "UserDeniedPairing")
	}
	bag := make([]byte, 64)
	if _, err := rand.Read(bag); err != nil {
		return lockdownError(req, name, "InternalError")
	}
	host.EscrowBag = bag
	d.trusted = append(d.trusted, host)
	d.saveTrustLocked()
	return map[string]any{"Request": name, "EscrowBag": bag, "WiFiMACAddress": d.cfg.Identity.WiFiAddress}
}

// checkDeviceCertificate makes sure the host certified this device's own public key, as a
// real device would (a record for another device could never start a session).
func (d *Device) checkDeviceCertificate(pemCert []byte) error {
	blk, _ := pem.Decode(pemCert)
	if blk == nil {
		return errors.New("DeviceCertificate is not PEM")
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return fmt.Errorf("DeviceCertificate: %w", err)
	}
	want, err := x509.MarshalPKIXPublicKey(d.devicePublicKey())
	if err != nil {
		return err
	}
	got, err := x509.MarshalPKIXPublicKey(cert.PublicKey)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, want) {
		return errors.New("DeviceCertificate is not for this device's key")
	}
	return nil
}

func (d *Device) devicePublicKey() any {
	blk, _ := pem.Decode(d.pairing.DevicePrivateKey)
	if blk == nil {
		return nil
	}
	k, err := x509.ParsePKCS1PrivateKey(blk.Bytes)
	if err != nil {
		return nil
	}
	return &k.PublicKey
}

// domainDiskUsage is lockdown's disk usage domain (pymobiledevice3 and ideviceinfo -q
// com.apple.disk_usage read it): capacity and free space of the device.
const domainDiskUsage = "com.apple.disk_usage"

// diskUsage reports a 128 GB device whose used data is the backup content plus a margin
// for what is not backed up, so a host can bound what a backup may write.
func (d *Device) diskUsage() map[string]any {
	const capacity = 128_000_000_000
	const dataCap = 110_000_000_000
	var used int64 = 64 << 20
	if cs, ok := d.cfg.Backup.(interface{ ContentSize() int64 }); ok {
		n := cs.ContentSize()
		used += n + n/10
	}
	used = min(used, dataCap)
	return map[string]any{"TotalDiskCapacity": uint64(capacity), "TotalDataCapacity": uint64(dataCap),
		"TotalDataAvailable": uint64(dataCap - used), "TotalSystemCapacity": uint64(capacity - dataCap)}
}
