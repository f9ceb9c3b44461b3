package cli

import "snapback/internal/failure"

// exitCode maps an error to the process exit status, once, from its failure class.
func exitCode(err error) int {
	if ec, ok := err.(interface{ ExitCode() int }); ok {
		return ec.ExitCode()
	}
	return failure.ExitCode(err)
}
