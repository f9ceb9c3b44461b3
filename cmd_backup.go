package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newBackupCmd is a placeholder until its owner fills it in.
func newBackupCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "backup",
		Hidden: true,
		RunE:   func(*cobra.Command, []string) error { return errors.New("backup: not built yet") },
	}
}
