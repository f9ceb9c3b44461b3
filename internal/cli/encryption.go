package cli

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"snapback/internal/device"
	"snapback/internal/engine"
	"snapback/internal/failure"
	"snapback/internal/mobilebackup2"
	"snapback/settings"
)

// newEncryptionCmd is `snapback encryption status|on|off|change-password --udid U`: the
// device's backup encryption, which lives on the device (protocol.md §8.3) and is changed
// only through mobilebackup2 ChangePassword. Passwords come from the keychain or the
// terminal (stdin when it is not one), never from arguments, the environment or files.
func newEncryptionCmd(d deps) *cobra.Command {
	return group("encryption", "Show or change a device's backup encryption",
		`Backup encryption is a setting of the device: once on, every backup of it is encrypted
with its backup password, whichever computer makes it. Encrypted backups also hold the
saved passwords, Health and Wi-Fi settings.

Passwords are taken from the keychain (see "snapback password set") or read from the
terminal without echo; from a pipe, one password per line (change-password: the old one
first, then the new one). iOS 13 and later ask for the device passcode on the device.`,
		encryptionSubcmd(d, "status", "Show whether the device encrypts its backups", runEncryptionStatus),
		encryptionSubcmd(d, "on", "Turn backup encryption on (password from the keychain, else asked twice)", runEncryptionOn),
		encryptionSubcmd(d, "off", "Turn backup encryption off (needs the current password)", runEncryptionOff),
		encryptionSubcmd(d, "change-password", "Change the backup password (needs the current one)", runEncryptionChange),
	)
}

// encryptionCmd is what every subcommand gets: the flags, the streams and the context.
type encryptionCmd struct {
	ctx      context.Context
	udid     string
	in       io.Reader // *os.File when a terminal, else one shared buffered reader
	out, err io.Writer
	devs     *device.Host // how the device is found (wifi_discovery)
	secrets  settings.Secrets
}

func encryptionSubcmd(d deps, use, short string, run func(encryptionCmd) error) *cobra.Command {
	var udid string
	cmd := &cobra.Command{
		Use:   use + " --udid UDID",
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := signalContext(cmd)
			defer cancel()
			in := cmd.InOrStdin()
			if _, ok := terminalFd(in); !ok {
				// One reader for all passwords of the command: each reader below would
				// otherwise buffer ahead and swallow the next line.
				in = bufio.NewReaderSize(in, maxPasswordLen)
			}
			devs, err := deviceHost(nil)
			if err != nil {
				return err
			}
			defer devs.Close()
			return run(encryptionCmd{ctx: ctx, udid: udid, in: in, out: cmd.OutOrStdout(), err: cmd.ErrOrStderr(), devs: devs, secrets: d.secrets})
		},
	}
	cmd.Flags().StringVar(&udid, "udid", "", "the device's `UDID` (snapback devices lists them)")
	cmd.MarkFlagRequired("udid")
	return cmd
}

func runEncryptionStatus(c encryptionCmd) error {
	on, err := engine.EncryptionStatus(c.ctx, c.devs, c.udid)
	if err != nil {
		return err
	}
	state := "off"
	if on {
		state = "on"
	}
	fmt.Fprintf(c.out, "backup encryption is %s for %s\n", state, c.udid)
	return nil
}

func runEncryptionOn(c encryptionCmd) error {
	pw, fromKeychain, err := c.storedOr(true, func() ([]byte, error) {
		fmt.Fprintln(c.err, "Choose the backup password (it is needed to restore; keep it safe).")
		s, err := readPassword(c.ctx, c.in, c.err, c.udid)
		return []byte(s), err
	})
	if err != nil {
		return err
	}
	if err := c.change(nil, pw); err != nil {
		return err
	}
	fmt.Fprintf(c.out, "backup encryption is on for %s\n", c.udid)
	if fromKeychain {
		fmt.Fprintln(c.out, "the password is the one stored in the keychain")
		return nil
	}
	return c.store(pw)
}

func runEncryptionOff(c encryptionCmd) error {
	// Nothing is stored afterwards: a keychain that cannot be read only means asking.
	old, fromKeychain, err := c.storedOr(false, c.askCurrent)
	if err != nil {
		return err
	}
	if err := c.change(old, nil); err != nil {
		return c.wrongStored(err, fromKeychain)
	}
	fmt.Fprintf(c.out, "backup encryption is off for %s; new backups are not encrypted\n", c.udid)
	if fromKeychain {
		fmt.Fprintf(c.out, "the old password stays in the keychain; `snapback password forget --udid %s` removes it\n", c.udid)
	}
	return nil
}

func runEncryptionChange(c encryptionCmd) error {
	old, fromKeychain, err := c.storedOr(true, c.askCurrent)
	if err != nil {
		return err
	}
	fmt.Fprintln(c.err, "Choose the new backup password.")
	s, err := readPassword(c.ctx, c.in, c.err, c.udid)
	if err != nil {
		return err
	}
	if err := c.change(old, []byte(s)); err != nil {
		return c.wrongStored(err, fromKeychain)
	}
	fmt.Fprintf(c.out, "the backup password of %s is changed\n", c.udid)
	return c.store([]byte(s))
}

// storedOr returns the keychain's password of the device, or ask's answer when none is
// stored. It runs before the device is touched. When the command will store a password
// afterwards (needStore), the keychain must work first: otherwise the device would take a
// password that nobody recorded and automatic backups could not read. Without needStore a
// keychain that cannot be used is reported and the terminal asked instead.
func (c encryptionCmd) storedOr(needStore bool, ask func() ([]byte, error)) (pw []byte, fromKeychain bool, err error) {
	secrets := c.secrets
	s, err := secrets.Get(c.ctx, c.udid)
	switch {
	case err == nil:
		if needStore {
			if err := keychainUsable(c.ctx, secrets); err != nil {
				return nil, false, err
			}
		}
		return []byte(s), true, nil
	case errors.Is(err, settings.ErrSecretNotFound):
		if needStore {
			if err := keychainUsable(c.ctx, secrets); err != nil {
				return nil, false, err
			}
		}
	case needStore:
		return nil, false, keychainFailure(err)
	default:
		fmt.Fprintf(c.err, "snapback: %v\n", failure.Text(keychainFailure(err)))
	}
	pw, err = ask()
	return pw, false, err
}

// keychainProbeAccount is the keychain account keychainUsable writes and removes; it is no
// UDID, so it never shadows a device's password.
const keychainProbeAccount = "snapback-keychain-check"

// keychainUsable stores, reads back and removes a random value under its own account: the
// cheapest proof that the password the command is about to set on the device can be kept.
func keychainUsable(ctx context.Context, secrets settings.Secrets) error {
	token := rand.Text()
	if err := secrets.Set(ctx, keychainProbeAccount, token); err != nil {
		return keychainFailure(err)
	}
	got, err := secrets.Get(ctx, keychainProbeAccount)
	secrets.Delete(ctx, keychainProbeAccount)
	if err != nil {
		return keychainFailure(err)
	}
	if got != token {
		return failure.Newf(failure.Keychain, "it returned another value than the one stored")
	}
	return nil
}

// keychainFailure classifies a keychain error, keeping the keyring's own remedy (which
// names the provider to start or unlock) as the one fix, and nothing changed on the device.
func keychainFailure(err error) error {
	var ke *settings.KeyringError
	if errors.As(err, &ke) {
		fix := strings.TrimPrefix(ke.Remedy(), "to fix: ")
		return &failure.Error{Class: failure.Keychain, Detail: "nothing was changed on the device", Cause: fmt.Errorf("keyring %s: %w", ke.Op, ke.Err), Fix: fix}
	}
	return &failure.Error{Class: failure.Keychain, Detail: "nothing was changed on the device", Cause: err}
}

func (c encryptionCmd) askCurrent() ([]byte, error) {
	return terminalPassword(c.ctx, c.in, c.err, c.udid)()
}

// change runs SetEncryption, telling the user when the device shows its passcode prompt.
func (c encryptionCmd) change(oldPw, newPw []byte) error {
	err := engine.SetEncryption(c.ctx, engine.EncryptionRequest{
		Devices: c.devs, UDID: c.udid, Old: oldPw, New: newPw,
		Events: func(ev mobilebackup2.Event) {
			if ev.Kind == mobilebackup2.EventPasscodeRequested {
				fmt.Fprintln(c.err, "enter the passcode on the device")
			}
		},
	})
	switch {
	case errors.Is(err, engine.ErrEncryptionAlreadyOn):
		return fmt.Errorf("encryption is already on for %s; `snapback encryption change-password --udid %s` changes its password", c.udid, c.udid)
	case errors.Is(err, engine.ErrEncryptionAlreadyOff):
		return fmt.Errorf("encryption is off for %s; nothing to change (`snapback encryption on --udid %s` turns it on)", c.udid, c.udid)
	case errors.Is(err, failure.WrongPassword):
		return fmt.Errorf("nothing changed: %w", err)
	case errors.Is(err, failure.DeviceLocked):
		return fmt.Errorf("the passcode was not entered on the device (208); nothing changed; unlock the device and enter the passcode when it asks: %w", err)
	}
	return err
}

// wrongStored adds the remedy when a keychain password turned out to be outdated.
func (c encryptionCmd) wrongStored(err error, fromKeychain bool) error {
	if fromKeychain && errors.Is(err, failure.WrongPassword) {
		e, _ := failure.As(err)
		return &failure.Error{Class: failure.WrongPassword, DeviceCode: e.DeviceCode, Detail: "the keychain holds an outdated password",
			Fix: fmt.Sprintf("snapback password set --udid %s replaces it", c.udid)}
	}
	return err
}

// store keeps the device's new password in the keychain, which automatic backups and the
// `encryption: on` setting read.
func (c encryptionCmd) store(pw []byte) error {
	if err := c.secrets.Set(c.ctx, c.udid, string(pw)); err != nil {
		return fmt.Errorf("the device uses the new password, but storing it in the keychain failed (%w); run `snapback password set --udid %s`", err, c.udid)
	}
	fmt.Fprintf(c.out, "stored the backup password in the keychain (service %q)\n", settings.KeyringService)
	return nil
}
