//go:build !unix

package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// deviceLock is a held lock.
type deviceLock struct {
	path  string
	token string
}

// acquireLock creates the lock file exclusively. An existing lock is taken over when it is
// stale: its process is dead (same host) or it is older than staleAfter (a process on
// another host, or a PID that was reused, cannot hold a backup that long).
func (s *Store) acquireLock(udid string) (*deviceLock, error) {
	path := s.l.lock(udid)
	for attempt := 0; attempt < 3; attempt++ {
		tok := randomHex(8)
		info := lockInfo{Host: s.host, PID: s.pid, Time: s.now(), Token: tok}
		b, _ := json.Marshal(info)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			_, werr := f.Write(b)
			serr := f.Sync()
			cerr := f.Close()
			if err := errors.Join(werr, serr, cerr); err != nil {
				os.Remove(path)
				return nil, fmt.Errorf("write lock %s: %w", path, err)
			}
			return &deviceLock{path: path, token: tok}, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("create lock %s: %w", path, err)
		}
		held, err := readLock(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue // released meanwhile
		}
		if err == nil && !s.lockStale(held) {
			return nil, classified(&LockedError{UDID: udid, Host: held.Host, PID: held.PID, Since: held.Time})
		}
		// Stale or unreadable (a crash while writing it): move it aside rather than delete, so
		// two processes taking over at once cannot both succeed — only one rename wins.
		aside := path + ".stale-" + randomHex(4)
		if err := os.Rename(path, aside); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("take over stale lock %s: %w", path, err)
		}
		os.Remove(aside)
		s.log.Warn("took over stale device lock", "udid", udid, "host", held.Host, "pid", held.PID, "since", held.Time)
	}
	return nil, fmt.Errorf("lock %s: contended, try again", path)
}

func (s *Store) lockStale(l lockInfo) bool {
	if s.now().Sub(l.Time) > s.opts.LockStaleAfter {
		return true
	}
	return l.Host == s.host && !processAlive(l.PID)
}

// release removes the lock if it is still ours.
func (l *deviceLock) release() error {
	if l == nil {
		return nil
	}
	held, err := readLock(l.path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("release lock: %w", err)
	}
	if held.Token != l.token {
		return nil
	}
	if err := os.Remove(l.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("release lock: %w", err)
	}
	return nil
}

// flockFile: the list of known destinations is rewritten atomically; without flock two
// processes updating it at once may lose one entry, which only weakens the guard.
func flockFile(string) (func(), error) { return func() {}, nil }
