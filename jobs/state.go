package jobs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"snapback/internal/atomicfile"
	"snapback/settings"
)

// Result is how a run ended.
type Result int

// Results of a run. Every result but ResultNone and ResultSuccess is a failed attempt.
const (
	ResultNone Result = iota
	ResultSuccess
	ResultFailed
	ResultPasscodeTimeout // the device asked for its passcode and nobody entered it
	ResultCancelled       // the user cancelled the run
	ResultDeviceGone      // the device went away during the run
	ResultDiskMissing     // the backup location is not there (disk not mounted)
	ResultDeclined        // the user tapped Cancel on the device's passcode prompt
)

var resultNames = [...]string{"none", "success", "failed", "passcode-timeout", "cancelled", "device-gone", "disk-missing", "declined-on-device"}

func (r Result) String() string {
	if int(r) < len(resultNames) {
		return resultNames[r]
	}
	return fmt.Sprintf("result(%d)", int(r))
}

// Failed reports whether r counts as a failed attempt.
func (r Result) Failed() bool {
	// A device that went away is unreachable, not failing (see recordResult).
	return r != ResultNone && r != ResultSuccess && r != ResultDeviceGone
}

// MarshalText writes the result by name so state.json stays readable.
func (r Result) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText reads a result name; unknown names read as ResultFailed.
func (r *Result) UnmarshalText(b []byte) error {
	if i := slices.Index(resultNames[:], string(b)); i >= 0 {
		*r = Result(i)
	} else {
		*r = ResultFailed
	}
	return nil
}

// RunState is the schedule-relevant history of one device.
type RunState struct {
	// FirstSeen is when Snapback first saw the device; overdue counts from it until the first
	// success.
	FirstSeen time.Time `json:"first_seen,omitzero"`
	// LastSuccess is when the last successful backup (manual or automatic) started: a backup
	// belongs to the day it started on.
	LastSuccess       time.Time `json:"last_success,omitzero"`
	LastSuccessManual bool      `json:"last_success_manual,omitempty"`
	LastAttempt       time.Time `json:"last_attempt,omitzero"`
	LastResult        Result    `json:"last_result"`
	// ConsecutiveFailures counts failed attempts since the last success.
	ConsecutiveFailures int `json:"consecutive_failures,omitempty"`
	// Failures holds the end times of recent failed attempts (newest last, at most
	// maxFailures); Decide counts those of the current window day.
	Failures []time.Time `json:"failures,omitempty"`
}

const maxFailures = 32

// Approval is a request for the user's permission, e.g. to delete old snapshots.
type Approval struct {
	ID      string    `json:"id"`
	Summary string    `json:"summary"`
	Since   time.Time `json:"since"`
	Bytes   int64     `json:"bytes,omitempty"`
	// Snapshots is how many snapshots the approval would delete.
	Snapshots int `json:"snapshots,omitempty"`
}

// DeviceRecord is everything persisted about one device.
type DeviceRecord struct {
	Name string `json:"name,omitempty"`
	RunState
	// LastError is the message of the last failure, for the tray and `snapback status`.
	LastError       string    `json:"last_error,omitempty"`
	PendingApproval *Approval `json:"pending_approval,omitempty"`
	// OverdueNotified is when the overdue signal was last raised (once per day).
	OverdueNotified time.Time `json:"overdue_notified,omitzero"`
}

// State is the whole persistent run state. Devices are keyed by UDID (JSON keeps case).
type State struct {
	Version int                     `json:"version"`
	Paused  bool                    `json:"paused"`
	Devices map[string]DeviceRecord `json:"devices"`
}

func (s State) clone() State {
	c := s
	c.Devices = maps.Clone(s.Devices)
	if c.Devices == nil {
		c.Devices = map[string]DeviceRecord{}
	}
	for k, d := range c.Devices {
		d.Failures = slices.Clone(d.Failures)
		if d.PendingApproval != nil {
			a := *d.PendingApproval
			d.PendingApproval = &a
		}
		c.Devices[k] = d
	}
	return c
}

// recordResult folds a finished run into the device's history. started is when the run
// began (a success belongs to that day), ended when it ended (retry delays count from it).
func (d *DeviceRecord) recordResult(res Result, manual bool, started, ended time.Time, errText string) {
	d.LastAttempt = started
	d.LastResult = res
	if res == ResultSuccess {
		d.LastSuccess = started
		d.LastSuccessManual = manual
		d.ConsecutiveFailures = 0
		d.Failures = nil
		d.LastError = ""
		return
	}
	d.LastError = errText
	if res == ResultDeviceGone {
		// The device left (cable pulled, Wi-Fi out of range or asleep): it is unreachable,
		// not failing. The run starts again when it returns, without a retry delay.
		return
	}
	d.ConsecutiveFailures++
	d.Failures = append(d.Failures, ended)
	if len(d.Failures) > maxFailures {
		d.Failures = d.Failures[len(d.Failures)-maxFailures:]
	}
}

const stateVersion = 1

// CorruptStateError reports a state file that could not be read. The file was moved aside
// to MovedTo and the app starts from an empty state (it only loses history, never backups).
type CorruptStateError struct {
	Path, MovedTo string
	Err           error
}

func (e *CorruptStateError) Error() string {
	return fmt.Sprintf("run state %s is unreadable (%v); moved it to %s and started afresh", e.Path, e.Err, e.MovedTo)
}

func (e *CorruptStateError) Unwrap() error { return e.Err }

// StateStore holds the run state in memory and writes it atomically to a JSON file after
// every change. Safe for concurrent use.
type StateStore struct {
	path string
	mu   sync.Mutex
	st   State
}

// DefaultStatePath is state.json in the OS state folder ($XDG_STATE_HOME/snapback on Linux).
func DefaultStatePath() (string, error) {
	dir, err := settings.StateDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "state.json"), nil
}

// OpenState loads the run state at path. A missing file is an empty state. A corrupt file is
// moved aside and reported with a *CorruptStateError alongside a usable, empty store. An
// empty path keeps the state in memory only (tests).
func OpenState(path string) (*StateStore, error) {
	s := &StateStore{path: path, st: State{Version: stateVersion, Devices: map[string]DeviceRecord{}}}
	if path == "" {
		return s, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read run state: %w", err)
	}
	var st State
	dec := json.NewDecoder(bytes.NewReader(data))
	err = dec.Decode(&st)
	if err == nil && dec.Decode(&struct{}{}) != io.EOF {
		err = errors.New("trailing data")
	}
	if err == nil && st.Version > stateVersion {
		err = fmt.Errorf("written by a newer Snapback (version %d)", st.Version)
	}
	if err != nil {
		moved := path + ".corrupt"
		if rerr := os.Rename(path, moved); rerr != nil {
			return nil, fmt.Errorf("run state %s is unreadable (%v) and cannot be moved aside: %w", path, err, rerr)
		}
		return s, &CorruptStateError{Path: path, MovedTo: moved, Err: err}
	}
	st.Version = stateVersion
	s.st = st.clone()
	return s, nil
}

// Path is the state file ("" for memory only).
func (s *StateStore) Path() string { return s.path }

// Snapshot returns a deep copy of the state.
func (s *StateStore) Snapshot() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.clone()
}

// Device returns the record of udid (zero when unknown).
func (s *StateStore) Device(udid string) DeviceRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	one := State{Devices: map[string]DeviceRecord{udid: s.st.Devices[udid]}}
	return one.clone().Devices[udid]
}

// Update applies fn to the state and saves it. If saving fails the in-memory state keeps the
// change (the app goes on; the error says the file is behind).
func (s *StateStore) Update(fn func(*State)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(&s.st)
	if s.path == "" {
		return nil
	}
	data, err := json.MarshalIndent(s.st, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return fmt.Errorf("save run state: %w", err)
	}
	if err := atomicfile.WriteFile(s.path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("save run state: %w", err)
	}
	return nil
}

// UpdateDevice applies fn to the record of udid and saves.
func (s *StateStore) UpdateDevice(udid string, fn func(*DeviceRecord)) error {
	return s.Update(func(st *State) {
		if st.Devices == nil {
			st.Devices = map[string]DeviceRecord{}
		}
		d := st.Devices[udid]
		fn(&d)
		st.Devices[udid] = d
	})
}
