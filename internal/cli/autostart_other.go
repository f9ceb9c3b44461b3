//go:build !linux && !freebsd && !openbsd && !netbsd && !darwin && !windows

package cli

import (
	"fmt"
	"runtime"
)

func newAutostart() (autostart, error) {
	return nil, fmt.Errorf("autostart: not supported on %s", runtime.GOOS)
}
