package lockdown

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"regexp"
	"testing"

	"snapback/internal/plistio"
)

func TestCanonicalUDID(t *testing.T) {
	for in, want := range map[string]string{
		"00008030001A35E22E38802E":                 "00008030-001A35E22E38802E", // usbmuxd's serial form (libimobiledevice #1381)
		"00008030-001A35E22E38802E":                "00008030-001A35E22E38802E",
		"0123456789abcdef0123456789abcdef01234567": "0123456789abcdef0123456789abcdef01234567", // 40-digit UDIDs have no dash
		"00008030001A35E22E38802Z":                 "00008030001A35E22E38802Z",
	} {
		if got := CanonicalUDID(in); got != want {
			t.Errorf("CanonicalUDID(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNewUUID(t *testing.T) {
	v4 := regexp.MustCompile(`^[0-9A-F]{8}-[0-9A-F]{4}-4[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}$`)
	a, b := NewUUID(), NewUUID()
	if !v4.MatchString(a) || a == b {
		t.Fatalf("NewUUID gave %q and %q; want two different upper-case version-4 UUIDs", a, b)
	}
}

// TestIssuePairRecord: the certificates chain to the root, the device certificate carries the
// device's key, the host's key opens its certificate, and the record survives usbmuxd's plist.
func TestIssuePairRecord(t *testing.T) {
	keys, err := GenerateKeys(3)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := IssuePairRecord(keys[0], keys[1], &keys[2].PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	parse := func(name string, b []byte) *x509.Certificate {
		t.Helper()
		blk, _ := pem.Decode(b)
		if blk == nil || blk.Type != "CERTIFICATE" {
			t.Fatalf("%s is not a PEM certificate", name)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return c
	}
	root := parse("root", rec.RootCertificate)
	for name, b := range map[string][]byte{"host": rec.HostCertificate, "device": rec.DeviceCertificate} {
		if err := parse(name, b).CheckSignatureFrom(root); err != nil {
			t.Errorf("%s certificate is not signed by the root: %v", name, err)
		}
	}
	if !keys[2].PublicKey.Equal(parse("device", rec.DeviceCertificate).PublicKey) {
		t.Error("the device certificate does not carry the device's key")
	}
	if _, err := tls.X509KeyPair(rec.HostCertificate, rec.HostPrivateKey); err != nil {
		t.Errorf("host key and certificate: %v", err)
	}
	if _, err := tls.X509KeyPair(rec.RootCertificate, rec.RootPrivateKey); err != nil {
		t.Errorf("root key and certificate: %v", err)
	}
	rec.HostID, rec.SystemBUID, rec.EscrowBag = NewUUID(), NewUUID(), []byte{1, 2, 3}
	b, err := rec.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var back PairRecord
	if err := plistio.Unmarshal(b, &back); err != nil || back.HostID != rec.HostID || string(back.HostPrivateKey) != string(rec.HostPrivateKey) || len(back.EscrowBag) != 3 {
		t.Fatalf("pair record plist round trip: %v, %+v", err, back)
	}
}
