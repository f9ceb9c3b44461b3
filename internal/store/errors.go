package store

import (
	"errors"
	"fmt"
	"time"

	"snapback/internal/failure"
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

// Error names the location and the cause; the class message ("the backup disk is not
// connected") comes from the *failure.Error the store wraps it in, and Fix is its remedy.
func (e *DiskError) Error() string {
	return fmt.Sprintf("%s: %s", e.Location, e.Cause)
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
	if e.PID == 0 {
		return fmt.Sprintf("backups of %s are in use by another Snapback process", e.UDID)
	}
	return fmt.Sprintf("backups of %s are in use by process %d on %s since %s",
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
	return fmt.Sprintf("%s has %s free, about %s needed", e.Location, mb(e.Free), mb(e.Need))
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

// classified wraps one of the store's typed errors in its failure class, once: the typed
// error stays reachable (errors.Is(err, ErrDiskNotConnected), errors.As(err, &de)) and the
// class gives the exit code, the remedy and the notification.
func classified(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := failure.As(err); ok {
		return err
	}
	var (
		de *DiskError
		se *SpaceError
		le *LockedError
		ve *VerifyError
	)
	switch {
	case errors.As(err, &de):
		return &failure.Error{Class: failure.DiskMissing, Cause: err, Fix: de.Fix}
	case errors.As(err, &se):
		return &failure.Error{Class: failure.NoSpace, Cause: err,
			Fix: fmt.Sprintf("free at least %s on the backup disk (snapback prune, snapback snapshots delete) or choose another location", mb(se.Need-se.Free))}
	case errors.As(err, &le):
		return &failure.Error{Class: failure.DeviceBusy, Cause: err, Fix: "wait for the other backup of this device to finish, then try again"}
	case errors.As(err, &ve):
		return &failure.Error{Class: failure.Damaged, Cause: err}
	}
	return err
}

// classify turns a local filesystem error of a store operation into its failure class, with
// the disk and (for a full disk) the bytes needed; need is what the operation was expected to
// write, 0 if unknown. Errors already classified, and errors that are not about the disk,
// pass through unchanged.
func (s *Store) classify(err error, need int64) error {
	if err == nil {
		return nil
	}
	if _, ok := failure.As(err); ok {
		return err
	}
	if c := classified(err); c != err {
		return c
	}
	switch failure.FromOS(err).Class {
	case failure.NoSpace:
		free, _ := freeBytes(existingParent(s.l.root))
		detail := fmt.Sprintf("backup disk %s has %s free", s.l.root, mb(free))
		fix := "free space on the backup disk (snapback prune, snapback snapshots delete) or choose another location"
		if need > 0 {
			detail += fmt.Sprintf(", about %s needed", mb(need))
			fix = fmt.Sprintf("free at least %s on the backup disk (snapback prune, snapback snapshots delete) or choose another location", mb(max(need-free, 1)))
		}
		return &failure.Error{Class: failure.NoSpace, Detail: detail, Cause: err, Fix: fix}
	case failure.ReadOnly:
		return &failure.Error{Class: failure.ReadOnly, Detail: "backup location " + s.l.root, Cause: err}
	case failure.PermissionDenied:
		return &failure.Error{Class: failure.PermissionDenied, Detail: "backup location " + s.l.root, Cause: err}
	}
	return err
}
