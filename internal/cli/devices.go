package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"snapback/internal/device"
)

// deviceRow is one line of `snapback devices`: what usbmuxd says plus what lockdown says
// (when the device trusts this computer).
type deviceRow struct {
	device.Entry
	Info  *device.Info `json:"info,omitempty"`
	Error string       `json:"error,omitempty"`
	// Unreachable says why a paired device is not listed.
	Unreachable string `json:"unreachable,omitempty"`
}

func newDevicesCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "devices",
		Short: "List connected iPhones and iPads",
		Long: `List the devices usbmuxd sees (USB and Wi-Fi; a device on both is shown once, on USB)
and, unless wifi_discovery is mux or off, the Wi-Fi devices Snapback finds itself over mDNS,
with their name, model, iOS version, battery and how each was found (usb, wifi via mux,
wifi direct). Paired devices that are not reachable are listed with the reason.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			rows, err := listDevices(ctx)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rows)
			}
			printDevices(cmd.OutOrStdout(), rows)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func listDevices(ctx context.Context) ([]deviceRow, error) {
	devs, err := deviceHost(nil)
	if err != nil {
		return nil, err
	}
	defer devs.Close()
	entries, err := devs.List(ctx)
	if err != nil {
		return nil, err
	}
	rows := make([]deviceRow, 0, len(entries))
	for _, e := range entries {
		row := deviceRow{Entry: e}
		info, err := deviceInfo(ctx, devs, e)
		if err != nil {
			row.Error = err.Error()
		} else {
			row.Info = &info
		}
		rows = append(rows, row)
	}
	return append(rows, unreachableRows(ctx, devs, entries)...), nil
}

func deviceInfo(ctx context.Context, devs *device.Host, e device.Entry) (device.Info, error) {
	s, err := devs.OpenEntry(ctx, e)
	if err != nil {
		return device.Info{}, err
	}
	defer s.Close()
	return s.Info(ctx)
}

func printDevices(w io.Writer, rows []deviceRow) {
	if len(rows) == 0 {
		fmt.Fprintln(w, "No devices connected.")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "UDID\tNAME\tMODEL\tiOS\tCONNECTION\tBATTERY\tENCRYPTED")
	for _, r := range rows {
		if r.Unreachable != "" {
			fmt.Fprintf(tw, "%s\t-\t-\t-\tnot reachable\t-\t-\t(%s)\n", r.UDID, r.Unreachable)
			continue
		}
		if r.Info == nil {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t%s\t-\t-\t(%s)\n", r.UDID, connection(r.Entry), r.Error)
			continue
		}
		i := r.Info
		battery := "-"
		if i.BatteryLevel >= 0 {
			battery = fmt.Sprintf("%d%%", i.BatteryLevel)
			if i.Charging {
				battery += " charging"
			}
		}
		enc := "no"
		if i.WillEncrypt {
			enc = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.UDID, i.Name, i.ProductType, i.ProductVersion, connection(r.Entry), battery, enc)
	}
	tw.Flush()
}
