//go:build !linux && !freebsd && !openbsd && !netbsd && !darwin && !windows

package main

import (
	"fmt"
	"runtime"
)

func newAutostart() (autostart, error) {
	return nil, fmt.Errorf("autostart: not supported on %s", runtime.GOOS)
}
