package failure

import (
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"syscall"
)

// FromOS classifies an error from a local filesystem operation by its errno: ENOSPC and
// EDQUOT are NoSpace, EROFS ReadOnly, EACCES and EPERM PermissionDenied, anything else
// LocalIO. An already classified error passes through unchanged. The store and the protocol
// call it where they touch the disk, so a full disk is never reported as a lost cable.
func FromOS(err error) *Error {
	if err == nil {
		return nil
	}
	if e, ok := As(err); ok {
		return e
	}
	switch {
	case errors.Is(err, syscall.ENOSPC), isQuota(err):
		return New(NoSpace, err)
	case errors.Is(err, syscall.EROFS):
		return New(ReadOnly, err)
	case errors.Is(err, fs.ErrPermission):
		return New(PermissionDenied, err)
	}
	return New(LocalIO, err)
}

// IsLinkLost reports errors that mean the byte stream to the device broke: EOF mid-message,
// reset, broken pipe, a closed or timed-out socket.
func IsLinkLost(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, io.ErrClosedPipe) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ETIMEDOUT) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne)
}

// IsLocalFS reports whether err came from a local filesystem call (an *fs.PathError or
// *os.LinkError in the chain, or a disk errno), as opposed to the device link.
func IsLocalFS(err error) bool {
	var pe *fs.PathError
	var le *os.LinkError
	if errors.As(err, &pe) || errors.As(err, &le) {
		return true
	}
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EROFS) || isQuota(err)
}
