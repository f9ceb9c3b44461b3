//go:build !linux && !darwin

package store

import "errors"

// methodOrder: no reflinks here (see reflinkFile), so hard links, else copies.
func methodOrder() []CloneMethod { return []CloneMethod{CloneHardlink} }

// reflinkFile: ReFS block cloning on Windows is not implemented; hard links or copies are used.
func reflinkFile(src, dst string) error { return errors.ErrUnsupported }
