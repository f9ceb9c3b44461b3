package store

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors for the conditions callers branch on. Match them with errors.Is; the
// concrete error types below carry the details for the user message.
var (
	// ErrDiskNotConnected: the destination's disk is not mounted, or the path is now an empty
	// mount point or a different filesystem than the one recorded. Nothing was written.
	ErrDiskNotConnected = errors.New("backup disk not connected")
	// ErrLocked: another live process holds the device's backup lock.
	ErrLocked = errors.New("device backup is locked by another run")
	// ErrInsufficientSpace: the destination has less free space than the run needs.
	ErrInsufficientSpace = errors.New("not enough free space on the backup destination")
	// ErrInvalidBackup: a backup folder failed verification.
	ErrInvalidBackup = errors.New("backup folder is not a complete backup")
	// ErrNotFound: no snapshot with that ID.
	ErrNotFound = errors.New("snapshot not found")
	// ErrProtected: the operation would delete the latest backup or a pinned snapshot.
	ErrProtected = errors.New("snapshot is protected")
	// ErrRunFinished: Commit or Abort was called on a run that already ended.
	ErrRunFinished = errors.New("backup run already finished")
)

// DiskError explains why a destination was refused. It matches ErrDiskNotConnected.
type DiskError struct {
	Location string
	Cause    string
	Fix      string
}

func (e *DiskError) Error() string {
	return fmt.Sprintf("backup disk not connected at %s: %s; %s", e.Location, e.Cause, e.Fix)
}

// Is makes errors.Is(err, ErrDiskNotConnected) true.
func (e *DiskError) Is(target error) bool { return target == ErrDiskNotConnected }

// LockedError describes the live holder of a device lock. It matches ErrLocked.
type LockedError struct {
	UDID  string
	Host  string
	PID   int
	Since time.Time
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("backup of %s is locked by process %d on %s since %s; wait for it to finish",
		e.UDID, e.PID, e.Host, e.Since.UTC().Format(time.RFC3339))
}

// Is makes errors.Is(err, ErrLocked) true.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// SpaceError reports a failed free-space check. It matches ErrInsufficientSpace.
type SpaceError struct {
	Location   string
	Free, Need int64
}

func (e *SpaceError) Error() string {
	return fmt.Sprintf("not enough free space at %s: %d MB free, %d MB needed; free some space or choose another location",
		e.Location, e.Free>>20, e.Need>>20)
}

// Is makes errors.Is(err, ErrInsufficientSpace) true.
func (e *SpaceError) Is(target error) bool { return target == ErrInsufficientSpace }

// VerifyError lists what is wrong with a backup folder. It matches ErrInvalidBackup.
type VerifyError struct {
	Dir      string
	Problems []string
}

func (e *VerifyError) Error() string {
	const show = 5
	msg := fmt.Sprintf("backup %s failed verification: ", e.Dir)
	for i, p := range e.Problems {
		if i == show {
			msg += fmt.Sprintf("; and %d more", len(e.Problems)-show)
			break
		}
		if i > 0 {
			msg += "; "
		}
		msg += p
	}
	return msg
}

// Is makes errors.Is(err, ErrInvalidBackup) true.
func (e *VerifyError) Is(target error) bool { return target == ErrInvalidBackup }
