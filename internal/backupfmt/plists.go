package backupfmt

import (
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"time"

	"howett.net/plist"

	"snapback/internal/plistio"
)

// Status is Status.plist, written by the device (binary plist). A backup is complete only
// when SnapshotState is "finished".
type Status struct {
	BackupState   string    `plist:"BackupState"`
	Date          time.Time `plist:"Date"`
	IsFullBackup  bool      `plist:"IsFullBackup"`
	SnapshotState string    `plist:"SnapshotState"`
	UUID          string    `plist:"UUID"`
	Version       string    `plist:"Version"`
}

// SnapshotFinished is the SnapshotState of a complete backup.
const SnapshotFinished = "finished"

// ReadStatus reads and decodes a Status.plist (binary or XML).
func ReadStatus(path string) (Status, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Status{}, fmt.Errorf("read Status.plist: %w", err)
	}
	s, err := ParseStatus(b)
	if err != nil {
		return Status{}, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// ParseStatus decodes Status.plist bytes; an empty payload is an error.
func ParseStatus(b []byte) (Status, error) {
	var s Status
	if err := plistio.Unmarshal(b, &s); err != nil {
		return Status{}, fmt.Errorf("parse Status.plist: %w", err)
	}
	return s, nil
}

// Marshal encodes s as a binary plist, as devices write it.
func (s Status) Marshal() ([]byte, error) {
	b, err := plist.Marshal(s, plist.BinaryFormat)
	if err != nil {
		return nil, fmt.Errorf("encode Status.plist: %w", err)
	}
	return b, nil
}

// Manifest is Manifest.plist, written by the device (binary plist).
type Manifest struct {
	BackupKeyBag         []byte         `plist:"BackupKeyBag,omitempty"`
	ManifestKey          []byte         `plist:"ManifestKey,omitempty"` // encrypted backups, iOS ≥ 10.2
	IsEncrypted          bool           `plist:"IsEncrypted"`
	Lockdown             map[string]any `plist:"Lockdown,omitempty"`
	Applications         map[string]any `plist:"Applications"`
	Date                 time.Time      `plist:"Date"`
	Version              string         `plist:"Version"`
	SystemDomainsVersion string         `plist:"SystemDomainsVersion,omitempty"`
	WasPasscodeSet       bool           `plist:"WasPasscodeSet"`
}

// ReadManifest reads and decodes a Manifest.plist. An empty file (what an interrupted backup
// leaves, and what devices answer with ErrorCode 205) is an error.
func ReadManifest(path string) (Manifest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Manifest{}, fmt.Errorf("read Manifest.plist: %w", err)
	}
	m, err := ParseManifest(b)
	if err != nil {
		return Manifest{}, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// ParseManifest decodes Manifest.plist bytes; an empty payload is an error.
func ParseManifest(b []byte) (Manifest, error) {
	var m Manifest
	if err := plistio.Unmarshal(b, &m); err != nil {
		return Manifest{}, fmt.Errorf("parse Manifest.plist: %w", err)
	}
	return m, nil
}

// Marshal encodes m as a binary plist. A nil Applications is written as an empty dict.
func (m Manifest) Marshal() ([]byte, error) {
	if m.Applications == nil {
		m.Applications = map[string]any{}
	}
	b, err := plist.Marshal(m, plist.BinaryFormat)
	if err != nil {
		return nil, fmt.Errorf("encode Manifest.plist: %w", err)
	}
	return b, nil
}

// Info is Info.plist, written by the host before it asks for a backup (XML). Keys follow
// idevicebackup2 and iTunes; optional ones are omitted when empty.
type Info struct {
	Applications          map[string]any    `plist:"Applications,omitempty"`
	BuildVersion          string            `plist:"Build Version"`
	DeviceName            string            `plist:"Device Name"`
	DisplayName           string            `plist:"Display Name"`
	GUID                  string            `plist:"GUID"`
	ICCID                 string            `plist:"ICCID,omitempty"`
	IMEI                  string            `plist:"IMEI,omitempty"`
	MEID                  string            `plist:"MEID,omitempty"`
	PhoneNumber           string            `plist:"Phone Number,omitempty"`
	InstalledApplications []string          `plist:"Installed Applications"`
	LastBackupDate        time.Time         `plist:"Last Backup Date"`
	ProductName           string            `plist:"Product Name,omitempty"`
	ProductType           string            `plist:"Product Type"`
	ProductVersion        string            `plist:"Product Version"`
	SerialNumber          string            `plist:"Serial Number"`
	TargetIdentifier      string            `plist:"Target Identifier"`
	TargetType            string            `plist:"Target Type"`
	UniqueIdentifier      string            `plist:"Unique Identifier"`
	IBooksData2           []byte            `plist:"iBooks Data 2,omitempty"`
	ITunesFiles           map[string][]byte `plist:"iTunes Files,omitempty"`
	ITunesSettings        map[string]any    `plist:"iTunes Settings,omitempty"`
	ITunesVersion         string            `plist:"iTunes Version"`
}

// ReadInfo reads and decodes an Info.plist (XML or binary).
func ReadInfo(path string) (Info, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Info{}, fmt.Errorf("read Info.plist: %w", err)
	}
	i, err := ParseInfo(b)
	if err != nil {
		return Info{}, fmt.Errorf("%s: %w", path, err)
	}
	return i, nil
}

// ParseInfo decodes Info.plist bytes. pymobiledevice3 writes GUID as 16 raw bytes instead of
// a hex string; that form is accepted and returned as 32 uppercase hex characters.
func ParseInfo(b []byte) (Info, error) {
	var i Info
	err := plistio.Unmarshal(b, &i)
	if err == nil {
		return i, nil
	}
	// Retry with a loosely typed GUID (the only key known to vary in type between hosts).
	var raw map[string]any
	if plistio.Unmarshal(b, &raw) != nil {
		return Info{}, fmt.Errorf("parse Info.plist: %w", err)
	}
	g, ok := raw["GUID"].([]byte)
	if !ok {
		return Info{}, fmt.Errorf("parse Info.plist: %w", err)
	}
	raw["GUID"] = strings.ToUpper(hex.EncodeToString(g))
	fixed, merr := plist.Marshal(raw, plist.BinaryFormat)
	if merr != nil {
		return Info{}, fmt.Errorf("parse Info.plist: %w", err)
	}
	if err := plistio.Unmarshal(fixed, &i); err != nil {
		return Info{}, fmt.Errorf("parse Info.plist: %w", err)
	}
	return i, nil
}

// Marshal encodes i as an XML plist, as idevicebackup2 writes it.
func (i Info) Marshal() ([]byte, error) {
	b, err := plist.MarshalIndent(i, plist.XMLFormat, "\t")
	if err != nil {
		return nil, fmt.Errorf("encode Info.plist: %w", err)
	}
	return b, nil
}
