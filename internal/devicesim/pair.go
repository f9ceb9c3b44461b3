package devicesim

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"snapback/internal/atomicfile"
	"snapback/internal/lockdown"
	"snapback/internal/plistio"
)

// PairRecord is the host-side pairing record usbmuxd serves for a device: the host's own
// definition, so that the simulator cannot drift from what internal/device writes.
type PairRecord = lockdown.PairRecord

// pairing is the device side of a pairing: the record plus the device's own private key,
// which never leaves the device.
type pairing struct {
	Record           PairRecord
	DevicePrivateKey []byte
}

// newPairing creates a fresh root CA, host and device certificate for one device with the
// host's own code (lockdown.IssuePairRecord), so a simulated pairing is the one Snapback
// makes when it pairs a real device.
func newPairing(systemBUID, wifiMAC string) (*pairing, error) {
	keys, err := lockdown.GenerateKeys(3)
	if err != nil {
		return nil, err
	}
	devKey := keys[2]
	rec, err := lockdown.IssuePairRecord(keys[0], keys[1], &devKey.PublicKey)
	if err != nil {
		return nil, err
	}
	rec.EscrowBag = make([]byte, 64)
	rand.Read(rec.EscrowBag) // never fails (crypto/rand panics instead)
	rec.HostID, rec.SystemBUID, rec.WiFiMACAddress = lockdown.NewUUID(), systemBUID, wifiMAC
	return &pairing{Record: rec, DevicePrivateKey: lockdown.PrivateKeyPEM(devKey)}, nil
}

// tlsCertificate is the certificate the device presents as TLS server.
func (p *pairing) tlsCertificate() (tls.Certificate, error) {
	c, err := tls.X509KeyPair(p.Record.DeviceCertificate, p.DevicePrivateKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("device key pair: %w", err)
	}
	return c, nil
}

// devicePublicKeyPEM is lockdown's DevicePublicKey value (needed by hosts that pair).
func (p *pairing) devicePublicKeyPEM() []byte {
	blk, _ := pem.Decode(p.DevicePrivateKey)
	if blk == nil {
		return nil
	}
	k, err := x509.ParsePKCS1PrivateKey(blk.Bytes)
	if err != nil {
		return nil
	}
	return lockdown.PEM("RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&k.PublicKey))
}

// loadOrCreatePairing reads <dir>/pairing.plist or creates and saves a new pairing, so
// that a restarted simulator keeps the pairing its hosts already trust. dir "" means
// in-memory only.
func loadOrCreatePairing(dir, systemBUID, wifiMAC string) (*pairing, error) {
	if dir != "" {
		b, err := os.ReadFile(filepath.Join(dir, "pairing.plist"))
		switch {
		case err == nil:
			var p pairing
			if err := plistio.Unmarshal(b, &p); err != nil {
				return nil, fmt.Errorf("read pairing in %s: %w", dir, err)
			}
			if _, err := p.tlsCertificate(); err != nil {
				return nil, fmt.Errorf("read pairing in %s: %w", dir, err)
			}
			return &p, nil
		case !errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("read pairing: %w", err)
		}
	}
	p, err := newPairing(systemBUID, wifiMAC)
	if err != nil {
		return nil, err
	}
	if dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create device state dir: %w", err)
		}
		b, err := plistio.Marshal(p, plistio.XML)
		if err != nil {
			return nil, fmt.Errorf("encode pairing: %w", err)
		}
		// The file holds private keys: owner-only.
		if err := atomicfile.WriteFile(filepath.Join(dir, "pairing.plist"), b, 0o600); err != nil {
			return nil, err
		}
	}
	return p, nil
}
