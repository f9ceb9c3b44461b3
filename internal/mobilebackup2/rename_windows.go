//go:build windows

package mobilebackup2

import "os"

func rename(from, to string) error { return os.Rename(from, to) }
