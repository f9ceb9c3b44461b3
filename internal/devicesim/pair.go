package devicesim

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"time"

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

// newPairing creates a fresh root CA, host and device certificate for one device, the way
// a host does when it pairs (RSA 2048; SHA-256 signatures, where libimobiledevice uses SHA-1).
func newPairing(systemBUID, wifiMAC string) (*pairing, error) {
	// Key generation dominates AddDevice; the three keys are independent.
	var keys [3]*rsa.PrivateKey
	var errs [3]error
	var wg sync.WaitGroup
	for i := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			keys[i], errs[i] = rsa.GenerateKey(rand.Reader, 2048)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs[:]...); err != nil {
		return nil, fmt.Errorf("generate keys: %w", err)
	}
	rootKey, hostKey, devKey := keys[0], keys[1], keys[2]
	notBefore := time.Now().Add(-time.Hour)
	notAfter := notBefore.AddDate(10, 0, 0)
	rootTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(0),
		Subject:               pkix.Name{CommonName: "Snapback simulated root"},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey)
	if err != nil {
		return nil, fmt.Errorf("create root certificate: %w", err)
	}
	rootCert, err := x509.ParseCertificate(rootDER)
	if err != nil {
		return nil, fmt.Errorf("parse root certificate: %w", err)
	}
	leaf := func(serial int64, cn string, pub *rsa.PublicKey) ([]byte, error) {
		tmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(serial),
			Subject:               pkix.Name{CommonName: cn},
			NotBefore:             notBefore,
			NotAfter:              notAfter,
			BasicConstraintsValid: true,
			KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, rootCert, pub, rootKey)
		if err != nil {
			return nil, fmt.Errorf("create %s certificate: %w", cn, err)
		}
		return pemBlock("CERTIFICATE", der), nil
	}
	hostPEM, err := leaf(1, "Snapback simulated host", &hostKey.PublicKey)
	if err != nil {
		return nil, err
	}
	devPEM, err := leaf(2, "Snapback simulated device", &devKey.PublicKey)
	if err != nil {
		return nil, err
	}
	escrow := make([]byte, 64)
	if _, err := rand.Read(escrow); err != nil {
		return nil, fmt.Errorf("generate escrow bag: %w", err)
	}
	return &pairing{
		Record: PairRecord{
			DeviceCertificate: devPEM,
			HostCertificate:   hostPEM,
			// PKCS#1 ("RSA PRIVATE KEY") is what libimobiledevice writes and reads back.
			HostPrivateKey:  pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(hostKey)),
			RootCertificate: pemBlock("CERTIFICATE", rootDER),
			RootPrivateKey:  pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rootKey)),
			HostID:          lockdown.NewUUID(),
			SystemBUID:      systemBUID,
			EscrowBag:       escrow,
			WiFiMACAddress:  wifiMAC,
		},
		DevicePrivateKey: pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(devKey)),
	}, nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
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
	return pemBlock("RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&k.PublicKey))
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
