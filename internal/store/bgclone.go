package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// bgClone is the clone of the latest backup into the staging folder made while the device
// works (BeginOptions.CloneInBackground), one top-level folder ("00" … "ff") at a time.
//
// A hard-link clone costs one linkat per file, about 15-25 µs of kernel time each on ext4
// (`cp -al` of 100,000 files: 1.5-1.8 s of system time on the 2-core test machine), and a
// complete Apple-format folder per snapshot needs all of them: directories cannot be
// hard-linked and with 1% churn every prefix folder changes. What can be avoided is waiting
// for it. The device touches the prefix folders only late: it creates them, uploads into its
// own <UDID>/Snapshot/ folder, and only at the end moves the new files into the prefix
// folders and removes deleted ones (protocol.md §11; backupsim's backup.go does the same).
// So the host gates each operation on the one top-level entry it touches (EntryReady):
// that folder is linked now, on the caller's goroutine, if no worker has started it yet,
// and the rest of the clone runs on the second core meanwhile, while the device diffs and
// uploads.
type bgClone struct {
	s        *Store
	src, dst string
	m        CloneMethod
	ctx      context.Context // cancelled by stop
	cancel   context.CancelFunc

	root  chan struct{} // closed once the top-level files are cloned and units listed
	units map[string]*cloneUnit
	order []*cloneUnit

	done chan struct{} // closed when every worker ended
	idle bool          // each worker runs at idle priority (RunIdle)
	mu   sync.Mutex
	err  error // the first failure; set before done or a unit's done is closed
	next int   // index into order of the next unit a worker takes
}

// cloneUnit is one top-level folder of the backup.
type cloneUnit struct {
	name    string
	started bool          // guarded by bgClone.mu
	done    chan struct{} // closed when it is linked (or failed: see bgClone.err)
	err     error
}

// startClone starts cloning src into the new folder dst with workers goroutines owned by the
// returned bgClone: stop ends them.
func (s *Store) startClone(ctx context.Context, src, dst string, m CloneMethod, workers int) *bgClone {
	return s.startCloneAt(ctx, src, dst, m, workers, false)
}

// startCloneAt is startClone with each worker at idle I/O and CPU priority when idle is set
// (RunIdle sets them per thread, so every worker sets its own).
func (s *Store) startCloneAt(ctx context.Context, src, dst string, m CloneMethod, workers int, idle bool) *bgClone {
	ctx, cancel := context.WithCancel(ctx)
	c := &bgClone{s: s, src: src, dst: dst, m: m, ctx: ctx, cancel: cancel, idle: idle,
		root: make(chan struct{}), units: map[string]*cloneUnit{}, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		var err error
		if c.idle {
			RunIdle(func() { err = c.cloneRoot() })
		} else {
			err = c.cloneRoot()
		}
		close(c.root)
		if err != nil {
			c.fail(err)
			return
		}
		var wg sync.WaitGroup
		for range max(workers, 1) {
			wg.Go(func() {
				work := func() {
					for u := c.take(); u != nil; u = c.take() {
						c.run(u)
					}
				}
				if c.idle {
					RunIdle(work)
				} else {
					work()
				}
			})
		}
		wg.Wait()
	}()
	return c
}

// cloneRoot makes dst with the top-level files and symlinks of src and lists its folders as
// units, in directory order.
func (c *bgClone) cloneRoot() error {
	if err := os.Mkdir(c.dst, 0o755); err != nil && !os.IsExist(err) {
		return fmt.Errorf("clone: %w", err)
	}
	entries, err := os.ReadDir(c.src)
	if err != nil {
		return fmt.Errorf("clone: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		src, dst := filepath.Join(c.src, name), filepath.Join(c.dst, name)
		switch t := e.Type(); {
		case t.IsDir():
			u := &cloneUnit{name: name, done: make(chan struct{})}
			c.units[name] = u
			c.order = append(c.order, u)
		case t&os.ModeSymlink != 0:
			link, err := os.Readlink(src)
			if err != nil {
				return fmt.Errorf("clone: %w", err)
			}
			if err := os.Symlink(link, dst); err != nil {
				return fmt.Errorf("clone: %w", err)
			}
		case t.IsRegular():
			c.hook()
			if err := cloneFile(src, dst, c.m); err != nil {
				return fmt.Errorf("clone: %w", err)
			}
		}
	}
	return nil
}

// take claims the next unit no one has started, nil when none is left or the clone failed.
func (c *bgClone) take() *cloneUnit {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.err == nil && c.next < len(c.order) {
		u := c.order[c.next]
		c.next++
		if !u.started {
			u.started = true
			return u
		}
	}
	return nil
}

// run links unit u, which the caller has claimed.
func (c *bgClone) run(u *cloneUnit) {
	err := cloneDir(c.ctx, filepath.Join(c.src, u.name), filepath.Join(c.dst, u.name), c.m, c.hook)
	if err != nil {
		u.err = c.fail(err)
	}
	close(u.done)
}

func (c *bgClone) hook() { c.s.hook("clone") }

// fail records err as the clone's failure (the first one wins) and stops the workers. It
// returns the recorded failure.
func (c *bgClone) fail(err error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
		c.cancel()
	}
	return c.err
}

// until waits for ch to be closed; it returns ctx's error if ctx ends first.
func until(ctx context.Context, ch <-chan struct{}) error {
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// failure is the clone's first failure, nil so far.
func (c *bgClone) failure() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// rootReady waits until the top-level files are in place.
func (c *bgClone) rootReady(ctx context.Context) error {
	if err := until(ctx, c.root); err != nil {
		return err
	}
	return c.failure()
}

// entryReady returns once the top-level entry name of the backup folder is cloned: at once
// for a file or a name the latest backup does not have, after linking it here for a folder
// no worker has started, after waiting for the worker otherwise. name "" is the whole
// folder.
func (c *bgClone) entryReady(ctx context.Context, name string) error {
	if name == "" {
		return c.wait(ctx)
	}
	if err := c.rootReady(ctx); err != nil {
		return err
	}
	u := c.units[name] // read-only once root is closed
	if u == nil {
		return nil
	}
	c.mu.Lock()
	if err := c.err; err != nil {
		c.mu.Unlock()
		return err
	}
	mine := !u.started
	u.started = true
	c.mu.Unlock()
	if mine {
		c.run(u)
	} else if err := until(ctx, u.done); err != nil {
		return err
	}
	return u.err
}

// wait waits for the whole clone: the workers and any unit a caller is linking.
func (c *bgClone) wait(ctx context.Context) error {
	if err := until(ctx, c.done); err != nil {
		return err
	}
	for _, u := range c.started() {
		if err := until(ctx, u.done); err != nil {
			return err
		}
	}
	return c.failure()
}

func (c *bgClone) started() []*cloneUnit {
	c.mu.Lock()
	defer c.mu.Unlock()
	var us []*cloneUnit
	for _, u := range c.order {
		if u.started {
			us = append(us, u)
		}
	}
	return us
}

// stop cancels the clone and waits for everything started to end.
func (c *bgClone) stop() {
	c.cancel()
	_ = c.wait(context.Background())
}
