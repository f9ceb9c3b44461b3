package settings

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultDebounce is how long the watcher waits after the last change to the file before it
// reads it: editors write in several steps (truncate+write, or temp file+rename).
const DefaultDebounce = 250 * time.Millisecond

// Change is what a Store reports after re-reading the file. Exactly one of Settings and Err is
// set: Settings is the new, now-current settings; Err says why the edit was rejected (the
// previous settings stay current).
type Change struct {
	Settings *Settings
	Err      error
}

// Store publishes the current settings. Current is safe from any goroutine and cheap (an
// atomic load); the returned *Settings must not be modified.
type Store struct {
	path     string
	debounce time.Duration
	cur      atomic.Pointer[Settings]

	watchingOnce sync.Once
	watching     chan struct{} // closed once Watch follows the file; see Watching
	markOnce     sync.Once
}

// Watching is closed once Watch follows the file: edits made after it are seen. A caller
// that edits the file right after starting Watch (a test, a "config set" in the same
// process) waits for it instead of guessing with a delay.
func (st *Store) Watching() <-chan struct{} {
	st.watchingOnce.Do(func() { st.watching = make(chan struct{}) })
	return st.watching
}

// Open reads the settings file at path. When the file is missing the defaults apply. When it
// is invalid, Open still returns a usable Store running on the defaults, together with the
// error, so a daemon can report the problem and keep going.
func Open(path string) (*Store, error) {
	st := &Store{path: path, debounce: DefaultDebounce}
	s, err := Load(path)
	if err != nil {
		// Defaults plus environment overrides; if the environment itself is bad, plain defaults.
		def, derr := Parse(nil)
		if derr != nil {
			if def, derr = build(fileSettings{}); derr != nil {
				return nil, errors.Join(err, derr)
			}
		}
		st.cur.Store(def)
		return st, err
	}
	st.cur.Store(s)
	return st, nil
}

// NewStatic returns a Store that always holds s; for tests and callers without a file.
func NewStatic(s *Settings) *Store {
	st := &Store{}
	st.cur.Store(s)
	return st
}

// Path is the settings file the store reads.
func (st *Store) Path() string { return st.path }

// Current returns the last good settings.
func (st *Store) Current() *Settings { return st.cur.Load() }

// SetDebounce changes the watcher's quiet period; call it before Watch.
func (st *Store) SetDebounce(d time.Duration) { st.debounce = d }

// Reload reads the file now. On success the new settings become current; on error the old
// ones stay. Watch calls it; callers may too (e.g. on SIGHUP).
func (st *Store) Reload() Change {
	s, err := Load(st.path)
	if err != nil {
		return Change{Err: err}
	}
	st.cur.Store(s)
	return Change{Settings: s}
}

// Watch follows the settings file until ctx ends, calling onChange (from Watch's goroutine)
// after each reload. It watches the directory, not the file, so editors that replace the file
// (write a temp file and rename it over, or remove and create) are followed: the new file is
// picked up by name. Bursts of events are debounced. Watch returns ctx.Err() when ctx ends,
// or an error if the watch cannot be set up or fails; the caller decides what to do then
// (the last good settings stay current).
func (st *Store) Watch(ctx context.Context, onChange func(Change)) error {
	dir := filepath.Dir(st.path)
	// The folder must exist to be watched; creating it is harmless and lets `config init`
	// or an editor create the file later.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("watch settings: %w", err)
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch settings: %w", err)
	}
	defer w.Close()
	if err := w.Add(dir); err != nil {
		return fmt.Errorf("watch settings: %w", err)
	}
	st.Watching()
	st.markOnce.Do(func() { close(st.watching) })
	name := filepath.Clean(st.path)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("watch settings: watcher closed")
			}
			if filepath.Clean(ev.Name) != name || ev.Op == fsnotify.Chmod {
				continue
			}
			timer.Reset(st.debounce)
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("watch settings: watcher closed")
			}
			// An overflow loses events but not the file: re-read to be sure.
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				timer.Reset(st.debounce)
				continue
			}
			return fmt.Errorf("watch settings: %w", err)
		case <-timer.C:
			if _, err := os.Stat(st.path); errors.Is(err, os.ErrNotExist) {
				// Removed and not (yet) recreated: keep running on the last good settings
				// rather than silently falling back to defaults.
				if onChange != nil {
					onChange(Change{Err: fmt.Errorf("settings file %s was removed; keeping the last good settings", st.path)})
				}
				continue
			}
			c := st.Reload()
			if onChange != nil {
				onChange(c)
			}
		}
	}
}
