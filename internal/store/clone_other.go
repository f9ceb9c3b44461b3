//go:build !linux && !darwin

package store

import "errors"

// reflinkFile: ReFS block cloning on Windows is not implemented; hard links or copies are used.
func reflinkFile(src, dst string) error { return errors.ErrUnsupported }
