package lockdown

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"time"
)

// GenerateKeys returns n RSA 2048 keys (the size libimobiledevice and iOS use), generated in
// parallel: key generation dominates a pairing.
func GenerateKeys(n int) ([]*rsa.PrivateKey, error) {
	keys := make([]*rsa.PrivateKey, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() { keys[i], errs[i] = rsa.GenerateKey(rand.Reader, 2048) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("generate keys: %w", err)
	}
	return keys, nil
}

// IssuePairRecord creates the certificates a Pair request carries, the way libimobiledevice's
// pair_record_generate_keys_and_certs does (v3 certificates valid for 10 years, with subject
// key IDs), with SHA-256 signatures: a root CA for rootKey, and the host's and the device's
// certificates signed by it. The returned record holds them and the host-side private keys;
// HostID, SystemBUID, EscrowBag and WiFiMACAddress are the caller's to fill in.
func IssuePairRecord(rootKey, hostKey *rsa.PrivateKey, devicePub *rsa.PublicKey) (PairRecord, error) {
	notBefore := time.Now().Add(-time.Hour)
	notAfter := notBefore.AddDate(10, 0, 0)
	ski := func(pub *rsa.PublicKey) []byte {
		h := sha1.Sum(x509.MarshalPKCS1PublicKey(pub))
		return h[:]
	}
	rootTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(0), Subject: pkix.Name{CommonName: "Snapback root"},
		NotBefore: notBefore, NotAfter: notAfter, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, SubjectKeyId: ski(&rootKey.PublicKey),
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey)
	if err != nil {
		return PairRecord{}, fmt.Errorf("create root certificate: %w", err)
	}
	root, err := x509.ParseCertificate(rootDER)
	if err != nil {
		return PairRecord{}, fmt.Errorf("parse root certificate: %w", err)
	}
	leaf := func(serial int64, pub *rsa.PublicKey) ([]byte, error) {
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), NotBefore: notBefore, NotAfter: notAfter, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, SubjectKeyId: ski(pub),
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, root, pub, rootKey)
		if err != nil {
			return nil, fmt.Errorf("create certificate %d: %w", serial, err)
		}
		return PEM("CERTIFICATE", der), nil
	}
	hostCert, err := leaf(1, &hostKey.PublicKey)
	if err != nil {
		return PairRecord{}, err
	}
	devCert, err := leaf(2, devicePub)
	if err != nil {
		return PairRecord{}, err
	}
	return PairRecord{
		DeviceCertificate: devCert,
		HostCertificate:   hostCert,
		HostPrivateKey:    PrivateKeyPEM(hostKey),
		RootCertificate:   PEM("CERTIFICATE", rootDER),
		RootPrivateKey:    PrivateKeyPEM(rootKey),
	}, nil
}

// PEM encodes der as one PEM block of typ.
func PEM(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// PrivateKeyPEM is k as PKCS#1 ("RSA PRIVATE KEY"), what libimobiledevice writes and reads
// back.
func PrivateKeyPEM(k *rsa.PrivateKey) []byte {
	return PEM("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k))
}
