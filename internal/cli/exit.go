package cli

import (
	"errors"

	"snapback/internal/failure"
)

// exitCode maps an error to the process exit status, once, from its failure class.
func exitCode(err error) int {
	var ec interface{ ExitCode() int }
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	return failure.ExitCode(err)
}
