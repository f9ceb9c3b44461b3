package cli

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"snapback/internal/devicesim"
	"snapback/internal/devicesim/backupsim"
)

// quirkFlags are the `snapback simulate` knobs for what real devices do (real-devices.md;
// each knob's evidence is cited at backupsim.Quirks and in devicesim/trust.go).
type quirkFlags struct {
	unpaired       bool
	trustDelay     time.Duration
	trustDeny      bool
	pairLocked     int
	fileErrors     int
	lockAfter      string
	purgeDemand    string
	scanDelay      time.Duration
	serialUDID     bool
	busyAfterDrop  time.Duration
	cancelPasscode bool
	realistic      bool
}

func addQuirkFlags(fl *pflag.FlagSet, q *quirkFlags) {
	fl.BoolVar(&q.unpaired, "unpaired", false, "devices trust no computer yet: hosts must pair (lockdown Pair and the Trust dialog)")
	fl.DurationVar(&q.trustDelay, "trust-delay", 0, "with --unpaired: how long the simulated user takes to tap Trust (Pair answers PairingDialogResponsePending meanwhile)")
	fl.BoolVar(&q.trustDeny, "trust-deny", false, "with --unpaired: the simulated user taps Don't Trust (UserDeniedPairing)")
	fl.IntVar(&q.pairLocked, "pair-locked", 0, "with --unpaired: this many Pair requests find the device locked (PasswordProtected)")
	fl.IntVar(&q.fileErrors, "file-errors", 0, "this many files per backup fail mid-upload with an error block; the backup still completes (iOS 17)")
	fl.StringVar(&q.lockAfter, "lock-after", "", "the device stops uploading after this many bytes and ends with 104 (screen locked), e.g. 5MB")
	fl.StringVar(&q.purgeDemand, "purge-demand", "", "the device claims to need this much free space (iOS 26 asks for terabytes), e.g. 11TB")
	fl.DurationVar(&q.scanDelay, "scan-delay", 0, "silence after the backup request before the device's first message (scanning)")
	fl.BoolVar(&q.serialUDID, "serial-udid", false, "usbmuxd lists the devices under the 24-hex-digit USB serial without the dash")
	fl.DurationVar(&q.busyAfterDrop, "busy-after-drop", 0, "after a host vanishes mid-backup the device answers 'already in progress' this long")
	fl.BoolVar(&q.cancelPasscode, "cancel-passcode", false, "the simulated user taps Cancel on the backup passcode prompt")
	fl.BoolVar(&q.realistic, "realistic", false, "turn the quirks on in plausible proportions: one unreadable file and an inflated space demand every backup, a 20 s scan, the device locking in one backup of seven, busy for a while after a dropped host; plus --unpaired --trust-delay 5s --pair-locked 1 unless given")
}

// apply sets the quirks on one device's options. seed makes --realistic deterministic.
func (q quirkFlags) apply(seed int64, o *backupsim.Options, cfg *devicesim.DeviceConfig, changed func(string) bool) error {
	lock, err := parseSize(q.lockAfter)
	if err != nil {
		return fmt.Errorf("--lock-after: %w", err)
	}
	demand, err := parseSize(q.purgeDemand)
	if err != nil {
		return fmt.Errorf("--purge-demand: %w", err)
	}
	cfg.Unpaired, cfg.TrustDelay, cfg.TrustDeny, cfg.PairLocked, cfg.SerialUDID = q.unpaired, q.trustDelay, q.trustDeny, q.pairLocked, q.serialUDID
	o.Quirks = backupsim.Quirks{ScanDelay: q.scanDelay, FileErrors: q.fileErrors, LockAfter: lock, PurgeDemand: demand,
		BusyAfterDrop: q.busyAfterDrop, CancelPasscode: q.cancelPasscode}
	if !q.realistic {
		return nil
	}
	scan := 20 * time.Second
	if changed("scan-delay") {
		scan = q.scanDelay
	}
	o.QuirkPlan = backupsim.Realistic(seed, scan)
	if !changed("unpaired") {
		cfg.Unpaired = true
	}
	if !changed("trust-delay") {
		cfg.TrustDelay = 5 * time.Second
	}
	if !changed("pair-locked") {
		cfg.PairLocked = 1
	}
	return nil
}
