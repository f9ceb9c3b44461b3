package main

import "errors"

// exitCoder is implemented by errors that carry their own process exit status.
type exitCoder interface{ ExitCode() int }

// exitCode maps an error to the process exit status: 1 unless the error says otherwise.
func exitCode(err error) int {
	var ec exitCoder
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	return 1
}
