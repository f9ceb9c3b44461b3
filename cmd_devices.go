package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newDevicesCmd is a placeholder until its owner fills it in.
func newDevicesCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "devices",
		Hidden: true,
		RunE:   func(*cobra.Command, []string) error { return errors.New("devices: not built yet") },
	}
}
