//go:build unix

package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// deviceLock is a held device lock: an flock on the device's folder in Snapback.Versions.
//
// Why flock on the folder: it needs no free block (the backup disk may be full, and that is
// exactly when the user must still be able to delete snapshots and restore), the kernel
// releases it when the holder dies (no stale locks to guess about after a crash or a
// SIGKILL), and it excludes other processes and other Store values in this one alike (each
// open file description is its own lock owner). The lock file beside it only says who holds
// the lock, for the message another run shows; it is written when space allows.
type deviceLock struct {
	f    *os.File
	info string
}

func (s *Store) acquireLock(udid string) (*deviceLock, error) {
	dir := s.l.device(udid)
	f, err := os.Open(dir)
	if err != nil {
		return nil, s.classify(fmt.Errorf("lock %s: %w", dir, err), 0)
	}
	err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if err != nil && !errors.Is(err, unix.EWOULDBLOCK) {
		// NFS emulates flock with POSIX locks, and an exclusive one needs a file open for
		// writing (EBADF on a directory): lock a file there instead. It is created once and
		// kept, so a full disk later does not stop it.
		f.Close()
		f, err = os.OpenFile(filepath.Join(dir, lockFile+".held"), os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, s.classify(fmt.Errorf("lock %s: %w", dir, err), 0)
		}
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	}
	if err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			held, _ := readLock(s.l.lock(udid))
			return nil, classified(&LockedError{UDID: udid, Host: held.Host, PID: held.PID, Since: held.Time})
		}
		return nil, s.classify(fmt.Errorf("lock %s: %w", dir, err), 0)
	}
	info := lockInfo{Host: s.host, PID: s.pid, Time: s.now(), Token: randomHex(8)}
	b, _ := json.Marshal(info)
	if err := os.WriteFile(s.l.lock(udid), b, 0o644); err != nil {
		s.log.Debug("lock holder not written (the lock holds anyway)", "err", err)
	}
	return &deviceLock{f: f, info: s.l.lock(udid)}, nil
}

// release removes the holder's note and drops the lock. Idempotent.
func (l *deviceLock) release() error {
	if l == nil || l.f == nil {
		return nil
	}
	rerr := removeFile(l.info)
	uerr := unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
	cerr := l.f.Close()
	l.f = nil
	if err := errors.Join(rerr, uerr, cerr); err != nil {
		return fmt.Errorf("release lock: %w", err)
	}
	return nil
}

// flockFile takes an exclusive flock on path (created if missing), waiting for other holders,
// and returns its release.
func flockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
}
