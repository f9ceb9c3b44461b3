package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newSimulateCmd is a placeholder until its owner fills it in.
func newSimulateCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "simulate",
		Hidden: true,
		RunE:   func(*cobra.Command, []string) error { return errors.New("simulate: not built yet") },
	}
}
