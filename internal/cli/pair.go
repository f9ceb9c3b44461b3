package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"snapback/internal/device"
	"snapback/internal/failure"
)

// pairPromptText is what the user is told while the device waits for them. The app's
// notification uses the same words.
func pairPromptText(p device.PairPrompt, name string) string {
	if p == device.PromptUnlock {
		return fmt.Sprintf("Unlock %s so it can show the Trust dialog", name)
	}
	return fmt.Sprintf("Tap Trust on %s and enter its passcode", name)
}

func findEntry(ctx context.Context, udid string) (device.Entry, error) {
	e, err := device.Find(ctx, udid)
	if err != nil {
		if errors.Is(err, device.ErrNotFound) || errors.Is(err, device.ErrNoUsbmuxd) {
			return e, failure.New(failure.NotConnected, err)
		}
		return e, failure.New(failure.Usage, err)
	}
	return e, nil
}

func newPairCmd() *cobra.Command {
	var udid string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "pair",
		Short: "Make the device trust this computer (Trust This Computer?)",
		Long: `Pairs this computer with the device: the device shows "Trust This Computer?"; tap Trust
and enter the passcode. The pair record is saved through usbmuxd, so other tools
(idevicebackup2, Finder's usbmuxd) share it. A device that already trusts this computer is
left as it is.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout+30*time.Second)
			defer cancel()
			e, err := findEntry(ctx, udid)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if err := device.Validate(ctx, e); err == nil {
				fmt.Fprintf(out, "%s already trusts this computer\n", e.UDID)
				return nil
			} else if !errors.Is(err, failure.NotPaired) {
				return err
			}
			err = device.Pair(ctx, e, device.PairOptions{Timeout: timeout, Prompt: func(p device.PairPrompt, name string) {
				fmt.Fprintln(out, pairPromptText(p, name))
			}})
			if err != nil {
				return err
			}
			if err := device.Validate(ctx, e); err != nil {
				return err
			}
			fmt.Fprintf(out, "paired with %s\n", e.UDID)
			return nil
		},
	}
	cmd.Flags().StringVar(&udid, "udid", "", "device to pair (default: the only connected device)")
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "how long to wait for Trust to be tapped")
	return cmd
}

func newUnpairCmd() *cobra.Command {
	var udid string
	cmd := command("unpair", "Make the device forget this computer and delete the pair record", func(cmd *cobra.Command) error {
		ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
		defer cancel()
		e, err := findEntry(ctx, udid)
		if err != nil {
			return err
		}
		if err := device.Unpair(ctx, e); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "unpaired %s\n", e.UDID)
		return nil
	})
	cmd.Flags().StringVar(&udid, "udid", "", "device to unpair (default: the only connected device)")
	return cmd
}

func newWifiCmd() *cobra.Command {
	var udid string
	cmd := &cobra.Command{
		Use:   "wifi on|off|status",
		Short: "Switch Wi-Fi sync of a device on or off, or show it",
		Long: `Wi-Fi backups need the device to accept connections over Wi-Fi: this switches
EnableWifiConnections (what Finder's "Show this iPhone when on Wi-Fi" sets). Run it once
over USB; the device must trust this computer (snapback pair).`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"on", "off", "status"},
		RunE: func(cmd *cobra.Command, args []string) error {
			var want *bool
			switch args[0] {
			case "on", "off":
				v := args[0] == "on"
				want = &v
			case "status":
			default:
				return failure.Newf(failure.Usage, "unknown argument %q: use on, off or status", args[0])
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			// Through the settings' device Host, so a device found by built-in Wi-Fi
			// discovery can be switched too (as the tray does).
			devs, err := deviceHost(nil)
			if err != nil {
				return err
			}
			e, err := devs.Find(ctx, udid)
			if err != nil {
				if errors.Is(err, device.ErrNotFound) || errors.Is(err, device.ErrNoUsbmuxd) {
					return failure.New(failure.NotConnected, err)
				}
				return err
			}
			on, err := devs.SwitchWifi(ctx, e, want)
			if err != nil {
				return err
			}
			state := "off"
			if on {
				state = "on"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Wi-Fi sync of %s is %s\n", e.UDID, state)
			return nil
		},
	}
	cmd.Flags().StringVar(&udid, "udid", "", "device (default: the only connected device)")
	return cmd
}
