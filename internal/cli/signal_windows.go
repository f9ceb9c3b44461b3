package cli

import "os"

// Windows has no SIGUSR1: the simulator's Wi-Fi toggle is only driven from Go there.
var toggleSignals []os.Signal
