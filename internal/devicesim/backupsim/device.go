// Package backupsim is the device side of com.apple.mobilebackup2 for the simulated iPhone:
// it drives a host through a backup over DeviceLink exactly the way BackupAgent2 does
// (protocol.md §7, §8.1, §12.5), answers Info and List requests ("useful" mode: Content
// from its own data), and restores backups of its own content: every blob is downloaded and
// checked byte for byte before the device takes the content back. ChangePassword turns
// backup encryption on or off or changes its password behind the same passcode prompt as
// Backup (iOS 13 and later). Other requests (Unback, EnableCloudBackup, …) get an error
// ProcessMessage.
//
// Its content is generated deterministically from a seed (realistic domains, many small
// files, multi-MB photos, a few large videos, directories and symlinks). File bytes are
// produced on the fly from (seed, file, version), so a large device costs almost no memory
// or disk. Knobs inject the failures real devices report (passcode timeout 208, host disk
// full 105, snapshot removal 104, setup not finished 212) and hostile paths.
//
// The transport (usbmuxd, lockdownd, TLS, notification_proxy) is package devicesim's job;
// it hands each mobilebackup2 connection to (*Device).Serve.
package backupsim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sync"
	"time"

	"snapback/internal/atomicfile"
	"snapback/internal/backupcrypto"
	"snapback/internal/backupfmt"
)

// Identity is what the device says about itself in Manifest.plist and Info replies.
type Identity struct {
	UDID, DeviceName, ProductType, ProductVersion, BuildVersion, SerialNumber, PhoneNumber, IMEI, ICCID string
}

// Notifier relays device-side notifications to notification_proxy observers.
// It is an alias of the interface literal, as devicesim.Notifier is, so *Device implements
// devicesim.BackupService without either package importing the other.
type Notifier = interface{ Post(name string) }

// Notification names the device posts around the iOS 16.1+ passcode prompt.
const (
	NotifyPasscodePresented = "com.apple.LocalAuthentication.ui.presented"
	NotifyPasscodeDismissed = "com.apple.LocalAuthentication.ui.dismissed"
)

// Options configure a simulated device. The zero value of every field has a documented
// default.
type Options struct {
	Identity Identity

	// Seed, Files and TotalSize determine the content. Files (default 500) counts regular
	// files and symlinks; directory rows come on top. TotalSize scales file sizes so the
	// initial content adds up to about that many bytes; 0 keeps natural sizes (photos of a
	// few MB, videos of tens of MB).
	Seed      int64
	Files     int
	TotalSize int64

	// StateDir, if set, keeps the content state (mutation history), the remembered backup
	// UUID and the counters across restarts. "" keeps everything in memory. If the state on
	// disk was made with another Seed, Files or TotalSize it is discarded.
	StateDir string

	// PasscodeRequired: nil means ProductVersion ≥ 16.1 for Backup and ≥ 13 for
	// ChangePassword. When required, every such request posts NotifyPasscodePresented, waits
	// PasscodeDelay for the simulated user (< 0 = never), then posts NotifyPasscodeDismissed.
	// PasscodeTimeout (default 180 s) ends the wait with ErrorCode 208.
	PasscodeRequired *bool
	PasscodeDelay    time.Duration
	PasscodeTimeout  time.Duration

	// FailCode injects a device error the way a device reports it: 104 (snapshot directory
	// not removed), 105 (not enough space on the host, after PurgeDiskSpace), 208 (passcode
	// refused), 212 (Setup Assistant not finished); any other non-zero code ends the Backup
	// request with that ErrorCode right away.
	FailCode int

	// Hostile adds path-traversal attempts (../, absolute, backslash, NUL, symlink targets
	// leaving the domain) to every kind of message and to Manifest.db, on top of a normal
	// backup. Never point a host without path checks (idevicebackup2) at a hostile device.
	Hostile bool

	// MutatePercent, if > 0, is applied with Mutate after each completed backup.
	MutatePercent float64

	// RequiredFreeSpace is the space the device asks the host for; 0 means the upload size.
	RequiredFreeSpace int64

	// PurgeTimeout bounds the wait for an answer to DLMessagePurgeDiskSpace (Debian's
	// idevicebackup2 never answers it). Default 10 s.
	PurgeTimeout time.Duration

	// Password, if set, makes the device encrypt its backups (WillEncrypt true) with a
	// keybag protected by it. KDFRounds is the keybag's PBKDF2-SHA256 round count (DPIC),
	// also for keybags made by ChangePassword; 0 means the real 10,000,000, which costs
	// seconds per keybag; tests use ~1000. Once a ChangePassword succeeded on a device with
	// a StateDir, the recorded setting wins over Password at the next start.
	Password  string
	KDFRounds int

	// Quirks are real-device behaviours applied to every Backup request; QuirkPlan, if
	// set, decides them per request instead (n counts Backup requests from 1), e.g.
	// Realistic(seed, scan).
	Quirks    Quirks
	QuirkPlan func(n int64) Quirks

	// TempDir is where downloaded and generated Manifest.db files are built; default
	// StateDir, else the OS temporary directory.
	TempDir string
}

// Counters describe what the device did, cumulatively, so tests can prove for instance that
// an incremental backup uploaded only the changed files.
type Counters struct {
	Connections        int64 // Serve calls
	BackupRequests     int64 // Backup requests received
	Backups            int64 // backups that ended with ErrorCode 0
	FullBackups        int64 // … of which full
	IncrementalBackups int64 // … of which incremental
	FailedBackups      int64 // Backup requests that ended with a non-zero ErrorCode
	PasscodePrompts    int64
	FilesUploaded      int64 // content blobs uploaded (not Manifest.db and the plists)
	BytesUploaded      int64 // content bytes uploaded
	FilesRemoved       int64 // blobs of deleted files the device asked the host to remove
	Restores           int64 // restores that ended with ErrorCode 0
	FailedRestores     int64
	FilesRestored      int64 // blobs downloaded and verified by restores
	BytesRestored      int64
	HostileAttempts    int64 // hostile paths sent (Hostile mode)
	HostileRefused     int64 // … of which the host refused (non-zero status or error block)
	PasswordChanges    int64 // ChangePassword requests that ended with ErrorCode 0
	// FailedPasswordChanges counts ChangePassword requests that ended with an error.
	FailedPasswordChanges int64
	// FileErrors counts files the device failed to upload (error block) in backups that
	// went on; LastFileErrors those of the last backup.
	FileErrors     int64
	LastFileErrors int64
	// PurgeRequests counts DLMessagePurgeDiskSpace sent.
	PurgeRequests int64

	LastFull             bool
	LastFilesUploaded    int64
	LastBytesUploaded    int64
	LastFilesRemoved     int64
	LastErrorCode        int
	LastErrorDescription string
	LastBackupUUID       string
}

// MutationSummary tells what one Mutate call changed.
type MutationSummary struct {
	Round                    int
	Added, Modified, Deleted int
	Files                    int // live files and symlinks afterwards
}

// File is one entry of the device's current content.
type File struct {
	Domain       string
	RelativePath string
	Flags        int64 // backupfmt.FlagFile, FlagDir or FlagSymlink
	Size         int64
	Mode         int64
	ModTime      time.Time
	Target       string // symlink target
	FileID       string

	index   int // generated item index; -1 for directories
	version uint32
}

// Device is one simulated device's backup agent. It is safe for concurrent use; one backup
// runs at a time (a second concurrent Backup request gets an error reply).
type Device struct {
	opts  Options
	scale float64
	dirs  []item

	busy sync.Mutex // held for the duration of a Backup request

	mu       sync.Mutex
	versions []uint32 // per generated item: 0 = deleted, else version ≥ 1
	rounds   []float64
	// base and baseRound record the content a restore installed: the state is base plus
	// the mutation rounds after baseRound (nil base = every item at version 1).
	base      []uint32
	baseRound int
	lastUUID  string
	// last is the device's record of its last completed backup (in memory only: after a
	// restart the device diffs against the host's Manifest.db, as it did before it had one).
	last     *lastBackup
	counters Counters

	// bag and keys change only with busy and mu held (ChangePassword); backups and restores
	// read them holding busy, WillEncrypt holding mu.
	bag  []byte             // BackupKeyBag of an encrypting device
	keys *backupcrypto.Keys // its unlocked class keys; nil = backups are not encrypted
	// encState is encOn or encOff once a ChangePassword succeeded, "" before. kek is the
	// keybag's key-encryption key while encState is encOn.
	encState string
	kek      []byte
	// stuck: until then Backup requests are refused as already in progress (after a host
	// vanished mid-backup; Quirks.BusyAfterDrop).
	stuck time.Time
}

// persisted is the StateDir file.
type persisted struct {
	Seed      int64
	Files     int
	TotalSize int64
	Rounds    []float64
	Base      []uint32 `json:",omitempty"` // content installed by the last restore
	BaseRound int      `json:",omitempty"` // rounds already contained in Base
	LastUUID  string
	Counters  Counters
	KeyBag    []byte `json:",omitempty"` // the encrypting device's BackupKeyBag
	// Encryption is encOn or encOff once ChangePassword set it. With encOn, KEK unlocks
	// KeyBag: the device keeps its keys, as a real one does in its secure storage, so the
	// password itself is never written anywhere.
	Encryption string `json:",omitempty"`
	KEK        []byte `json:",omitempty"`
}

const stateFile = "backupsim-state.json"

// New creates a device. With a StateDir it reloads the previous state.
func New(opts Options) (*Device, error) {
	if opts.Files <= 0 {
		opts.Files = 500
	}
	if opts.Files < 2 {
		opts.Files = 2
	}
	if opts.PasscodeTimeout <= 0 {
		opts.PasscodeTimeout = 180 * time.Second
	}
	if opts.PurgeTimeout <= 0 {
		opts.PurgeTimeout = 10 * time.Second
	}
	if opts.Identity.UDID == "" {
		return nil, errors.New("backupsim: Identity.UDID is required")
	}
	if opts.TempDir == "" {
		opts.TempDir = opts.StateDir
	}
	d := &Device{opts: opts, dirs: dirRows(), scale: 1}
	if opts.TotalSize > 0 {
		var sum float64
		for i := range opts.Files {
			sum += weight(opts.Seed, i, genKind(opts.Seed, i), 1)
		}
		if sum > 0 {
			d.scale = float64(opts.TotalSize) / sum
		}
	}
	d.versions = make([]uint32, opts.Files)
	for i := range d.versions {
		d.versions[i] = 1
	}
	if opts.StateDir != "" {
		if err := os.MkdirAll(opts.StateDir, 0o755); err != nil {
			return nil, fmt.Errorf("backupsim: state dir: %w", err)
		}
		if err := d.load(); err != nil {
			return nil, err
		}
	}
	if err := d.setupCrypto(); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *Device) load() error {
	b, err := os.ReadFile(filepath.Join(d.opts.StateDir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("backupsim: load state: %w", err)
	}
	var p persisted
	if err := json.Unmarshal(b, &p); err != nil {
		return fmt.Errorf("backupsim: load state %s: %w", stateFile, err)
	}
	if p.Seed != d.opts.Seed || p.Files != d.opts.Files || p.TotalSize != d.opts.TotalSize {
		return nil // other content: start fresh; the next save overwrites it
	}
	// Mutations are deterministic, so replaying the recorded rounds on top of the last
	// restored content rebuilds the current content.
	if p.Base != nil {
		if p.BaseRound > len(p.Rounds) {
			return nil // inconsistent file: start fresh
		}
		d.versions = append([]uint32(nil), p.Base...)
		d.base, d.baseRound = p.Base, p.BaseRound
		d.rounds = append([]float64(nil), p.Rounds[:p.BaseRound]...)
		p.Rounds = p.Rounds[p.BaseRound:]
	}
	for _, pct := range p.Rounds {
		d.mutateLocked(pct)
	}
	d.lastUUID = p.LastUUID
	d.counters = p.Counters
	d.bag = p.KeyBag
	d.encState, d.kek = p.Encryption, p.KEK
	return nil
}

// saveLocked persists the state; d.mu must be held. Memory-only devices do nothing.
func (d *Device) saveLocked() error {
	if d.opts.StateDir == "" {
		return nil
	}
	b, err := json.MarshalIndent(persisted{
		Seed: d.opts.Seed, Files: d.opts.Files, TotalSize: d.opts.TotalSize,
		Rounds: d.rounds, Base: d.base, BaseRound: d.baseRound, LastUUID: d.lastUUID, Counters: d.counters,
		KeyBag: d.bag, Encryption: d.encState, KEK: d.kek,
	}, "", "  ")
	if err != nil {
		return fmt.Errorf("backupsim: encode state: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(d.opts.StateDir, stateFile), b, 0o644); err != nil {
		return fmt.Errorf("backupsim: save state: %w", err)
	}
	return nil
}

// WillEncrypt reports whether backups are encrypted (lockdown com.apple.mobile.backup
// WillEncrypt): true when Options.Password is set, until a ChangePassword changes it.
func (d *Device) WillEncrypt() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.keys != nil
}

// UDID returns the device's UDID.
func (d *Device) UDID() string { return d.opts.Identity.UDID }

// ContentSize is the size of the device's current regular files: what a full backup
// uploads, and the basis of the disk usage lockdown reports.
func (d *Device) ContentSize() int64 {
	vers := d.snapshotVersions()
	var size int64
	for i, v := range vers {
		if k := genKind(d.opts.Seed, i); v != 0 && k != kindSymlink {
			size += d.size(i, k, v)
		}
	}
	return size
}

// Counters returns a copy of the counters.
func (d *Device) Counters() Counters {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.counters
}

// Mutate adds, modifies and deletes about percent % of the files (a third each),
// deterministically from the seed and the number of earlier mutations. Directories are
// never touched.
func (d *Device) Mutate(percent float64) MutationSummary {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.mutateLocked(percent)
	// Persisting is best effort here: Mutate has no error result and the in-memory state is
	// already changed; the next successful save catches up.
	_ = d.saveLocked()
	return s
}

func (d *Device) mutateLocked(percent float64) MutationSummary {
	p := math.Max(0, math.Min(percent, 100)) / 100
	d.rounds = append(d.rounds, percent)
	round := len(d.rounds)
	s := MutationSummary{Round: round}
	live := 0
	for i, v := range d.versions {
		if v == 0 {
			continue
		}
		live++
		r := unit(hash3(d.opts.Seed, uint64(i), 1<<40+uint64(round)))
		switch {
		case r < p/3 && i > 1: // the keychain and sms.db are never deleted
			d.versions[i] = 0
			s.Deleted++
		case r < 2*p/3:
			d.versions[i] = v + 1
			s.Modified++
		}
	}
	s.Added = int(math.Round(float64(live) * p / 3))
	for range s.Added {
		d.versions = append(d.versions, 1)
	}
	s.Files = live - s.Deleted + s.Added
	return s
}

// snapshotVersions copies the version table so a backup sees one consistent state even if
// Mutate runs meanwhile (4 bytes per file).
func (d *Device) snapshotVersions() []uint32 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]uint32(nil), d.versions...)
}

// Files returns the current content: directories first, then files and symlinks. It
// allocates one File per entry; use it for tests and tools, not on huge devices.
func (d *Device) Files() []File {
	vers := d.snapshotVersions()
	out := make([]File, 0, len(d.dirs)+len(vers))
	for _, it := range d.dirs {
		out = append(out, d.fileOf(d.dirRecord(it), -1, 0))
	}
	for i, v := range vers {
		if v == 0 {
			continue
		}
		out = append(out, d.fileOf(d.record(i, v, false), i, v))
	}
	return out
}

func (d *Device) fileOf(r backupfmt.Record, i int, v uint32) File {
	return File{
		Domain: r.Domain, RelativePath: r.RelativePath, Flags: r.Flags, Size: r.File.Size,
		Mode: r.File.Mode, ModTime: time.Unix(r.File.LastModified, 0).UTC(), Target: r.File.Target,
		FileID: r.FileID, index: i, version: v,
	}
}

// Open returns the bytes of f as the device has them (for a regular file from Files).
func (d *Device) Open(f File) (io.ReadCloser, error) {
	if f.Flags != backupfmt.FlagFile || f.index < 0 || f.version == 0 {
		return nil, fmt.Errorf("backupsim: %s %q is not a regular file of this device", f.Domain, f.RelativePath)
	}
	return d.content(f.index, f.version, f.Size), nil
}

func (d *Device) content(i int, v uint32, size int64) *contentReader {
	return &contentReader{key: contentKey(d.opts.Seed, i, v), size: size}
}
