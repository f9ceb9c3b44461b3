package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"snapback/settings"
)

// newSecrets opens the keychain; tests may replace it.
var newSecrets = func() settings.Secrets { return settings.NewKeyring(0) }

// newPasswordCmd is `snapback password`: store or forget a device's backup-encryption
// password in the OS keychain. The password is read from the terminal without echo, or from
// stdin when stdin is not a terminal; never from arguments or the environment, which other
// processes and shell histories can see.
func newPasswordCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "password",
		Short: "Store or forget a device's backup password in the OS keychain",
	}
	cmd.AddCommand(newPasswordSetCmd(), newPasswordForgetCmd())
	return cmd
}

func newPasswordSetCmd() *cobra.Command {
	var udid string
	cmd := &cobra.Command{
		Use:   "set --udid UDID",
		Short: "Store the backup password of a device (read from the terminal, or stdin)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pw, err := readPassword(cmd.InOrStdin(), cmd.ErrOrStderr(), udid)
			if err != nil {
				return err
			}
			if err := newSecrets().Set(cmd.Context(), udid, pw); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "stored the backup password of %s in the keychain (service %q)\n", udid, settings.KeyringService)
			return nil
		},
	}
	cmd.Flags().StringVar(&udid, "udid", "", "the device's `UDID` (snapback devices lists them)")
	cmd.MarkFlagRequired("udid")
	return cmd
}

func newPasswordForgetCmd() *cobra.Command {
	var udid string
	cmd := &cobra.Command{
		Use:   "forget --udid UDID",
		Short: "Remove the stored backup password of a device",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			err := newSecrets().Delete(cmd.Context(), udid)
			switch {
			case errors.Is(err, settings.ErrSecretNotFound):
				fmt.Fprintf(cmd.OutOrStdout(), "no backup password was stored for %s\n", udid)
				return nil
			case err != nil:
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "forgot the backup password of %s\n", udid)
			return nil
		},
	}
	cmd.Flags().StringVar(&udid, "udid", "", "the device's UDID")
	cmd.MarkFlagRequired("udid")
	return cmd
}

// readPassword reads the password without echo from a terminal (asking twice), or one line
// from a non-terminal stdin (scripts: `secret-tool lookup … | snapback password set`).
func readPassword(in io.Reader, prompt io.Writer, udid string) (string, error) {
	if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprintf(prompt, "Backup password for %s: ", udid)
		a, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(prompt)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		fmt.Fprint(prompt, "Again: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(prompt)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		if string(a) != string(b) {
			return "", errors.New("the two passwords differ; nothing stored")
		}
		if len(a) == 0 {
			return "", errors.New("empty password; nothing stored")
		}
		return string(a), nil
	}
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password from stdin: %w", err)
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return "", errors.New("empty password on stdin; nothing stored")
	}
	return pw, nil
}
