package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"snapback/settings"
)

// newPasswordCmd is `snapback password`: store or forget a device's backup-encryption
// password in the OS keychain. The password is read from the terminal without echo, or from
// stdin when stdin is not a terminal; never from arguments or the environment, which other
// processes and shell histories can see.
func newPasswordCmd(d deps) *cobra.Command {
	return group("password", "Store or forget a device's backup password in the OS keychain", "",
		newPasswordSetCmd(d), newPasswordForgetCmd(d))
}

func newPasswordSetCmd(d deps) *cobra.Command {
	var udid string
	cmd := command("set --udid UDID", "Store the backup password of a device (read from the terminal, or stdin)", func(cmd *cobra.Command) error {
		pw, err := readPassword(cmd.Context(), cmd.InOrStdin(), cmd.ErrOrStderr(), udid)
		if err != nil {
			return err
		}
		if err := d.secrets.Set(cmd.Context(), udid, pw); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "stored the backup password of %s in the keychain (service %q)\n", udid, settings.KeyringService)
		return nil
	})
	cmd.Flags().StringVar(&udid, "udid", "", "the device's `UDID` (snapback devices lists them)")
	cmd.MarkFlagRequired("udid")
	return cmd
}

func newPasswordForgetCmd(d deps) *cobra.Command {
	var udid string
	cmd := command("forget --udid UDID", "Remove the stored backup password of a device", func(cmd *cobra.Command) error {
		err := d.secrets.Delete(cmd.Context(), udid)
		switch {
		case errors.Is(err, settings.ErrSecretNotFound):
			fmt.Fprintf(cmd.OutOrStdout(), "no backup password was stored for %s\n", udid)
			return nil
		case err != nil:
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "forgot the backup password of %s\n", udid)
		return nil
	})
	cmd.Flags().StringVar(&udid, "udid", "", "the device's UDID")
	cmd.MarkFlagRequired("udid")
	return cmd
}
