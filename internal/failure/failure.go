// Package failure is Snapback's one failure taxonomy. An error is classified once, where it
// is understood (ENOSPC in the store is "no space", a closed socket in the protocol is "link
// lost", device error 208 is "device locked"), as an *Error. Every other layer passes it
// through unchanged, and every presenter (CLI, JSON, log, notification, status page) shows
// its cause once and its remedy once: Error() never contains the remedy, Remedy() is
// separate.
package failure

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Class says why something failed in terms a user can act on. The string is stable: it is
// used in JSON output, metrics labels and the run state.
type Class string

// The classes. Each has one message, one remedy, a retry flag and an exit code (see info).
const (
	Unknown           Class = "unknown"
	Cancelled         Class = "cancelled"           // the host cancelled (user, shutdown)
	CancelledOnDevice Class = "cancelled-on-device" // the user cancelled on the device
	Usage             Class = "usage"               // bad flags or arguments
	Config            Class = "config"              // the settings file is invalid
	NotConnected      Class = "not-connected"       // no such device, or no usbmuxd
	NotPaired         Class = "not-paired"          // no valid pair record / not trusted
	PairingDenied     Class = "pairing-denied"      // the user tapped Don't Trust
	PairingPending    Class = "pairing-pending"     // the Trust dialog was not answered in time
	DeviceLocked      Class = "device-locked"       // 208: the passcode was not entered
	DeviceStopped     Class = "device-stopped"      // 104 while the device was sending: it locked or stopped
	DeviceBusy        Class = "device-busy"         // another sync or another Snapback run holds the device
	SetupNotFinished  Class = "setup-not-finished"  // 212
	WrongPassword     Class = "wrong-password"      // 207: backup password wrong
	PasswordNeeded    Class = "password-needed"     // no backup password stored in the keychain
	Keychain          Class = "keychain"            // the OS keychain is unavailable
	LinkLost          Class = "link-lost"           // the byte stream to the device broke
	Protocol          Class = "protocol"            // the device said something we do not understand
	Incomplete        Class = "incomplete"          // the device ended without a finished backup
	DeviceError       Class = "device-error"        // another device error code
	NoSpace           Class = "no-space"            // ENOSPC / 105
	ReadOnly          Class = "read-only"           // EROFS
	PermissionDenied  Class = "permission-denied"   // EACCES / EPERM
	DiskMissing       Class = "disk-not-connected"  // the backup disk recorded for a location is absent
	LocalIO           Class = "local-io"            // another local filesystem failure
	Damaged           Class = "damaged"             // a backup or snapshot failed verification
	NoBackup          Class = "no-backup"           // nothing to read, restore or verify
	Offsite           Class = "offsite"             // restic failed, or is missing or too old
	OffsiteDown       Class = "offsite-down"        // the restic repository is unreachable or locked
)

// Exit codes of the snapback command, one per group of classes. README documents them.
const (
	ExitOK          = 0
	ExitFailure     = 1 // unknown, protocol, device error, incomplete, local I/O
	ExitUsage       = 2 // bad flags, arguments or settings
	ExitNoDevice    = 3 // not connected, not paired, pairing refused
	ExitLocked      = 4 // passcode not entered / device stopped while locked
	ExitNoSpace     = 5
	ExitBusy        = 6
	ExitDiskMissing = 7
	ExitNotWritable = 8 // read-only or permission denied
	ExitDamaged     = 9 // verification found damage, or there is no backup
	ExitPassword    = 10
	ExitLinkLost    = 11
	ExitCancelled   = 130
)

type info struct {
	msg, remedy string
	retry       bool
	exit        int
}

var classes = map[Class]info{
	Unknown:           {"failed", "try again; if it keeps failing, run with --verbose and report the log", true, ExitFailure},
	Cancelled:         {"cancelled", "", true, ExitCancelled},
	CancelledOnDevice: {"cancelled on the device", "start the backup again and do not tap Cancel on the device", false, ExitCancelled},
	Usage:             {"invalid usage", "see snapback help", false, ExitUsage},
	Config:            {"the settings are invalid", "fix the settings file (snapback config check names each problem)", false, ExitUsage},
	NotConnected:      {"the device is not connected", "connect the device by USB (or turn on Wi-Fi sync) and unlock it; snapback devices lists what is connected; on Linux make sure usbmuxd is running", true, ExitNoDevice},
	NotPaired:         {"this computer is not trusted by the device", "unlock the device and run snapback pair, then tap Trust and enter the passcode on the device", false, ExitNoDevice},
	PairingDenied:     {"the device refused to trust this computer", "run snapback pair again and tap Trust (not Don't Trust) on the device", false, ExitNoDevice},
	PairingPending:    {"the Trust This Computer dialog was not answered", "unlock the device, tap Trust and enter its passcode, then run snapback pair again", true, ExitNoDevice},
	DeviceLocked:      {"the passcode was not entered on the device", "unlock the device and enter its passcode when it asks during the backup (iOS 16.1 and later ask every time)", true, ExitLocked},
	DeviceStopped:     {"the device stopped uploading (it locked or was busy)", "keep the device unlocked and awake during the backup, then try again", true, ExitLocked},
	DeviceBusy:        {"the device is busy with another sync", "wait for the other sync (Finder, iTunes, another tool or another Snapback run) to finish, then try again", true, ExitBusy},
	SetupNotFinished:  {"the device has not finished its setup", "finish the setup assistant on the device, then try again", false, ExitFailure},
	WrongPassword:     {"the backup password is wrong", "enter the backup encryption password set on this device (snapback password set stores it)", false, ExitPassword},
	PasswordNeeded:    {"no backup password is stored", "store it with snapback password set --udid UDID", false, ExitPassword},
	Keychain:          {"the OS keychain is not available", "unlock or start the keychain (on Linux: a Secret Service such as gnome-keyring), then try again", false, ExitPassword},
	LinkLost:          {"the connection to the device was lost", "keep the device connected and awake (check the cable or Wi-Fi), then try again", true, ExitLinkLost},
	Protocol:          {"the device answered in an unexpected way", "update Snapback and try again; report the log if it persists", true, ExitFailure},
	Incomplete:        {"the device ended without completing the backup", "try again; the previous backup is unchanged", true, ExitFailure},
	DeviceError:       {"the device reported an error", "try again; restart the device if it keeps failing", true, ExitFailure},
	NoSpace:           {"not enough free space on the backup disk", "free space on the backup disk (snapback prune, snapback snapshots delete) or choose another location", false, ExitNoSpace},
	ReadOnly:          {"the backup disk is read-only", "remount the backup disk read-write or choose another location", false, ExitNotWritable},
	PermissionDenied:  {"permission denied on the backup location", "give your user write access to the backup location or choose another one", false, ExitNotWritable},
	DiskMissing:       {"the backup disk is not connected", "connect and mount the backup disk, then try again; to move backups to another disk, change location in the settings", true, ExitDiskMissing},
	LocalIO:           {"reading or writing on this computer failed", "check the backup disk (space, permissions, health), then try again", true, ExitFailure},
	Damaged:           {"the backup is damaged", "run snapback snapshots verify --data to see what is affected; the next backup re-sends damaged files", false, ExitDamaged},
	NoBackup:          {"there is no backup", "back up the device first (snapback backup), or check --udid and --location", false, ExitDamaged},
	Offsite:           {"the off-site copy failed", "see restic's message; snapback offsite check tells whether the repository is healthy", false, ExitFailure},
	OffsiteDown:       {"the off-site repository is unavailable", "check the network and the server; the copy resumes at the next push", true, ExitFailure},
}

// Classes lists every class, sorted, for documentation and the tests that check it.
func Classes() []Class {
	out := make([]Class, 0, len(classes))
	for c := range classes {
		out = append(out, c)
	}
	slices.Sort(out)
	return out
}

// Error marks the class of an error so that errors.Is(err, failure.NoSpace) works.
func (c Class) Error() string { return classes[c].msg }

// Message is the class's short user message.
func (c Class) Message() string {
	if i, ok := classes[c]; ok {
		return i.msg
	}
	return string(c)
}

// Remedy is what the user can do about this class.
func (c Class) Remedy() string { return classes[c].remedy }

// Retryable reports whether trying again later can succeed without the user doing anything
// that the remedy asks for first.
func (c Class) Retryable() bool { return classes[c].retry }

// ExitCode is the process exit status for this class.
func (c Class) ExitCode() int {
	if i, ok := classes[c]; ok {
		return i.exit
	}
	return ExitFailure
}

// Error is a classified failure. Error() is message, specifics and cause; never the remedy.
type Error struct {
	Class      Class
	Detail     string // specifics the message does not carry: a path, a disk, the device's text
	DeviceCode int64  // MBErrorDomain code from the device, 0 if none
	Cause      error  // underlying error, if any; shown once
	// Fix overrides the class remedy when the specifics allow a better one (naming the disk,
	// the UDID, the command). Empty means the class remedy.
	Fix string
}

// New builds a classified error. If cause is already classified, it is returned unchanged:
// the first classification, made where the error was understood, wins.
func New(c Class, cause error) *Error {
	if e, ok := As(cause); ok {
		return e
	}
	return &Error{Class: c, Cause: cause}
}

// Newf builds a classified error whose Detail is formatted; it wraps no cause.
func Newf(c Class, format string, args ...any) *Error {
	return &Error{Class: c, Detail: fmt.Sprintf(format, args...)}
}

// WithFix sets a remedy more specific than the class's and returns e.
func (e *Error) WithFix(fix string) *Error { e.Fix = fix; return e }

// WithDetail sets the detail and returns e.
func (e *Error) WithDetail(d string) *Error { e.Detail = d; return e }

func (e *Error) Error() string {
	msg := e.Class.Message()
	// Devices usually name the code in their description ("Device locked
	// (MBErrorDomain/208)"): the code is then not repeated.
	if e.DeviceCode != 0 && !strings.Contains(e.Detail, fmt.Sprint(e.DeviceCode)) {
		msg += fmt.Sprintf(" (device error %d)", e.DeviceCode)
	}
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	if e.Cause != nil {
		msg += ": " + e.Cause.Error()
	}
	return msg
}

// Remedy is what the user can do; empty when nothing helps (for example after a cancel).
func (e *Error) Remedy() string {
	if e.Fix != "" {
		return e.Fix
	}
	return e.Class.Remedy()
}

// Retryable reports whether the scheduler may try again by itself.
func (e *Error) Retryable() bool { return e.Class.Retryable() }

// ExitCode is the process exit status.
func (e *Error) ExitCode() int { return e.Class.ExitCode() }

// Unwrap exposes the cause.
func (e *Error) Unwrap() error { return e.Cause }

// Is matches a Class: errors.Is(err, failure.NoSpace).
func (e *Error) Is(target error) bool {
	c, ok := target.(Class)
	return ok && c == e.Class
}

// As finds the first classified error in err's chain. A bare Class wrapped with %w
// (fmt.Errorf("lock %s: %w", p, failure.DeviceBusy)) counts as a classification too.
func As(err error) (*Error, bool) {
	if err == nil {
		return nil, false
	}
	var e *Error
	if errors.As(err, &e) {
		return e, true
	}
	var c Class
	if errors.As(err, &c) {
		return &Error{Class: c, Detail: trimClass(err.Error(), c)}, true
	}
	return nil, false
}

// trimClass drops the class message that ends a wrapped text, so it is not said twice.
func trimClass(text string, c Class) string {
	return strings.TrimSuffix(strings.TrimSuffix(text, c.Message()), ": ")
}

// ClassOf is the class of err: its classification, Cancelled for a context error, Unknown
// otherwise (and "" for nil).
func ClassOf(err error) Class {
	if err == nil {
		return ""
	}
	if e, ok := As(err); ok {
		return e.Class
	}
	if errors.Is(err, context.Canceled) {
		return Cancelled
	}
	return Unknown
}

// Remedy is err's remedy, or the Unknown class's when err is not classified.
func Remedy(err error) string {
	if err == nil {
		return ""
	}
	if e, ok := As(err); ok {
		return e.Remedy()
	}
	if r, ok := err.(interface{ Remedy() string }); ok {
		return r.Remedy()
	}
	return ClassOf(err).Remedy()
}

// Retryable reports whether err may go away by itself.
func Retryable(err error) bool { return err != nil && ClassOf(err).Retryable() }

// ExitCode is the process exit status for err: 0 for nil, the class's code otherwise.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	return ClassOf(err).ExitCode()
}

// Text is the one-line form shown to users: the error once and its remedy once.
func Text(err error) string {
	if err == nil {
		return ""
	}
	if r := Remedy(err); r != "" {
		return err.Error() + ". " + capitalise(r) + "."
	}
	return err.Error()
}

func capitalise(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}
