package settings

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/zalando/go-keyring"
)

// KeyringService is the service name under which backup passwords are stored; the account
// is the device UDID (as iMazing does).
const KeyringService = "Snapback"

// DefaultSecretTimeout bounds every keyring call: go-keyring has no context and can block
// forever on a locked keyring whose unlock prompt nobody answers (libraries.md §3).
const DefaultSecretTimeout = 10 * time.Second

// ErrSecretNotFound means no backup password is stored for the device.
var ErrSecretNotFound = errors.New("no backup password stored for this device")

// Secrets stores backup-encryption passwords, one per device UDID.
type Secrets interface {
	Get(ctx context.Context, udid string) (string, error)
	Set(ctx context.Context, udid, password string) error
	Delete(ctx context.Context, udid string) error
}

// KeyringErrorKind classifies why the OS keyring could not be used.
type KeyringErrorKind int

// Kinds of keyring failure, each with its own remedy.
const (
	KeyringFailed       KeyringErrorKind = iota // anything else
	KeyringNoService                            // no Secret Service on this session (headless Linux)
	KeyringNoSessionBus                         // no D-Bus session bus at all
	KeyringLocked                               // the keyring refused to unlock
	KeyringTimeout                              // no answer in time (often an unanswered unlock prompt)
)

// KeyringError reports a keyring failure other than "not found", with a remedy the user can
// act on. Its message never contains the password.
type KeyringError struct {
	Op   string // "get", "set" or "delete"
	Kind KeyringErrorKind
	Err  error
}

func (e *KeyringError) Error() string {
	return fmt.Sprintf("keyring %s: %v; %s", e.Op, e.Err, e.Remedy())
}

func (e *KeyringError) Unwrap() error { return e.Err }

// Remedy says what the user can do about the failure.
func (e *KeyringError) Remedy() string {
	switch e.Kind {
	case KeyringNoSessionBus:
		return "to fix: run Snapback inside a desktop or D-Bus session (e.g. start it from your login session, " +
			"or wrap it in `dbus-run-session`) with a Secret Service provider such as gnome-keyring or KeePassXC"
	case KeyringNoService:
		return "to fix: install and start a Secret Service provider: `apt install gnome-keyring` then " +
			"`gnome-keyring-daemon --start --components=secrets` (or enable KeePassXC's Secret Service " +
			"integration), then unlock the keyring"
	case KeyringLocked:
		return "to fix: unlock your keyring (log in to the desktop, or `gnome-keyring-daemon --unlock`) and try again"
	case KeyringTimeout:
		return "to fix: the keyring did not answer; unlock it (an unlock prompt may be waiting on your desktop) and try again"
	default:
		return "to fix: check that your keyring (Keychain, Credential Manager or Secret Service) works and is unlocked"
	}
}

// Keyring is the Secrets implementation backed by the OS keychain through go-keyring:
// Keychain on macOS, Credential Manager on Windows, the Secret Service on Linux.
type Keyring struct {
	timeout time.Duration
	// one call at a time: a call that hangs past its timeout keeps its goroutine (go-keyring
	// cannot be interrupted) and holds this slot, so hung calls never pile up.
	slot chan struct{}
	// haveBus checks for a session bus first (see haveSessionBus); nil skips the check.
	haveBus func() bool
}

var errNoSessionBus = errors.New("no D-Bus session bus found")

// NewKeyring returns a keyring-backed Secrets whose calls give up after timeout
// (DefaultSecretTimeout when timeout <= 0).
func NewKeyring(timeout time.Duration) *Keyring {
	if timeout <= 0 {
		timeout = DefaultSecretTimeout
	}
	return &Keyring{timeout: timeout, slot: make(chan struct{}, 1), haveBus: haveSessionBus}
}

// Get returns the stored password of udid, or ErrSecretNotFound.
func (k *Keyring) Get(ctx context.Context, udid string) (string, error) {
	var pw string
	err := k.call(ctx, "get", func() error {
		var err error
		pw, err = keyring.Get(KeyringService, udid)
		return err
	})
	if err != nil {
		return "", err
	}
	return pw, nil
}

// Set stores password for udid, replacing any earlier one.
func (k *Keyring) Set(ctx context.Context, udid, password string) error {
	if udid == "" {
		return errors.New("keyring set: empty UDID")
	}
	return k.call(ctx, "set", func() error { return keyring.Set(KeyringService, udid, password) })
}

// Delete removes the password of udid; ErrSecretNotFound when there was none.
func (k *Keyring) Delete(ctx context.Context, udid string) error {
	return k.call(ctx, "delete", func() error { return keyring.Delete(KeyringService, udid) })
}

func (k *Keyring) call(ctx context.Context, op string, f func() error) error {
	ctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	select {
	case k.slot <- struct{}{}:
	case <-ctx.Done():
		return &KeyringError{Op: op, Kind: KeyringTimeout, Err: errors.New("an earlier keyring call is still waiting")}
	}
	// Everything that talks to D-Bus, the diagnosis included, runs in the goroutine so the
	// timeout bounds all of it.
	done := make(chan error, 1)
	go func() {
		defer func() { <-k.slot }()
		if k.haveBus != nil && !k.haveBus() {
			done <- &KeyringError{Op: op, Kind: KeyringNoSessionBus, Err: errNoSessionBus}
			return
		}
		done <- k.classify(op, f())
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return &KeyringError{Op: op, Kind: KeyringTimeout, Err: fmt.Errorf("no answer within %v", k.timeout)}
	}
}

// classify maps go-keyring's errors to ErrSecretNotFound or a *KeyringError. It asks the
// platform probe (secrets_*.go) what is missing rather than matching error strings.
func (k *Keyring) classify(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, keyring.ErrNotFound) {
		return ErrSecretNotFound
	}
	if errors.Is(err, keyring.ErrUnsupportedPlatform) {
		return &KeyringError{Op: op, Kind: KeyringNoService, Err: err}
	}
	kind := KeyringFailed
	if k.haveBus != nil {
		kind = probeKeyring()
	}
	return &KeyringError{Op: op, Kind: kind, Err: err}
}
