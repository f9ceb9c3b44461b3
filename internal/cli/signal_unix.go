//go:build !windows

package cli

import (
	"os"
	"syscall"
)

// toggleSignals are the signals that takes a simulated Wi-Fi device off the network and back.
var toggleSignals = []os.Signal{syscall.SIGUSR1}
