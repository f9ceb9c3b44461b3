package offsite

import (
	"errors"
	"fmt"
	"strings"

	"snapback/internal/failure"
)

// Kind says why an off-site operation failed; each kind has its own remedy.
type Kind int

// Kinds of failure. restic before 0.17 exits 1 for every fatal error, so most kinds are
// recognised from restic's own message (kept verbatim in Error.Message); restic 0.17 and
// later also give exit codes 10 (no repository), 11 (locked) and 12 (wrong password).
const (
	KindFailed        Kind = iota // anything not recognised below
	KindMissing                   // restic is not installed
	KindTooOld                    // restic is older than MinVersion
	KindNoPassword                // the keychain holds no password for the repository
	KindWrongPassword             // the repository does not accept the password
	KindNoRepository              // nothing at the repository address (not initialised)
	KindExists                    // init: a repository is already there
	KindLocked                    // another restic process holds the repository
	KindNetwork                   // the backend could not be reached
	KindInvalidBackup             // a restored backup failed verification
	KindNotFound                  // no off-site snapshot matches the request
	KindConfig                    // the settings do not name a repository
)

var kindNames = map[Kind]string{
	KindFailed: "failed", KindMissing: "restic missing", KindTooOld: "restic too old",
	KindNoPassword: "no password", KindWrongPassword: "wrong password", KindNoRepository: "no repository",
	KindExists: "repository exists", KindLocked: "locked", KindNetwork: "network",
	KindInvalidBackup: "invalid backup", KindNotFound: "not found", KindConfig: "not configured",
}

func (k Kind) String() string { return kindNames[k] }

// Error is an off-site failure as restic (or Snapback, when restic never ran) explains it:
// what was being done, on which repository, and restic's own message. It reaches callers as
// the cause of a *failure.Error whose class and remedy (Fix) follow from its Kind, so that
// every presenter shows the cause once and the remedy once; errors.As finds it for the Kind.
// It never holds the repository password.
type Error struct {
	Op         string // "init", "backup", "restore", ...
	Kind       Kind
	Repository string
	Message    string // restic's own words (its "Fatal:" line), or the cause
	Fix        string // what the user can do
	Err        error  // underlying error, if any
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "restic %s", e.Op)
	if e.Repository != "" {
		fmt.Fprintf(&b, " (%s)", e.Repository)
	}
	fmt.Fprintf(&b, ": %s", e.Message)
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Remedy says what the user can do about it.
func (e *Error) Remedy() string { return e.Fix }

// Retryable reports whether the same operation may succeed later without the user doing
// anything (a network outage, a lock another run still holds).
func (e *Error) Retryable() bool { return e.Kind == KindNetwork || e.Kind == KindLocked }

// Class is the failure class of the Kind.
func (e *Error) Class() failure.Class {
	switch e.Kind {
	case KindNoPassword:
		return failure.PasswordNeeded
	case KindWrongPassword:
		return failure.WrongPassword
	case KindConfig:
		return failure.Config
	case KindInvalidBackup:
		return failure.Damaged
	case KindNotFound:
		return failure.NoBackup
	case KindNetwork, KindLocked:
		return failure.OffsiteDown
	}
	return failure.Offsite
}

// classified wraps e in its failure class, with e's remedy.
func (e *Error) classified() error {
	return &failure.Error{Class: e.Class(), Cause: e, Fix: e.Fix}
}

// KindOf returns the Kind of err (KindFailed when err holds no *Error).
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindFailed
}

// NotConfigured is the failure of an off-site command when no repository is configured.
func NotConfigured(op string) error {
	return newError(op, KindConfig, "", "no off-site repository is configured", nil)
}

func remedy(k Kind, repo string) string {
	switch k {
	case KindMissing, KindTooOld:
		return installHint
	case KindNoPassword:
		return "run `snapback offsite init` to create the repository and store its password, or " +
			"`snapback offsite init --existing` to store the password of a repository you already have"
	case KindWrongPassword:
		return "store the right password with `snapback offsite init --existing` (it replaces the one in the keychain); " +
			"without it the repository cannot be read"
	case KindNoRepository:
		return fmt.Sprintf("create it with `snapback offsite init`, or correct offsite.repository (now %q) in the settings", repo)
	case KindExists:
		return "use `snapback offsite init --existing` to store the password of this repository, or choose another offsite.repository"
	case KindLocked:
		return "another restic process is using the repository; wait for it to finish. A lock left by a process " +
			"that died on this computer is removed automatically; one from another computer expires after 30 minutes " +
			"(or remove it with `restic unlock` once you are sure nothing runs)"
	case KindNetwork:
		return "check the network connection and that the server in offsite.repository is up; the upload resumes on the next push"
	case KindInvalidBackup:
		return "the restored folder was removed; run `snapback offsite check --read-data` to look for damage, or restore an older snapshot"
	case KindNotFound:
		return "list what the repository holds with `snapback offsite list`"
	case KindConfig:
		return "set offsite.repository in the settings (e.g. /mnt/usb/restic, sftp:user@host:/srv/restic, " +
			"rest:https://host:8000/; `snapback config path` names the file) or pass --repo"
	}
	return "see restic's message above; `snapback offsite check` tells whether the repository is healthy"
}

func newError(op string, k Kind, repo, msg string, err error) error {
	return (&Error{Op: op, Kind: k, Repository: repo, Message: msg, Fix: remedy(k, repo), Err: err}).classified()
}

// classify turns a failed restic run into an *Error, from restic's exit code (0.17+) and its
// own message (every version).
func classify(op, repo string, exitCode int, stderr string, err error) *Error {
	msg := fatalMessage(stderr)
	if msg == "" {
		msg = fmt.Sprintf("restic exited with status %d", exitCode)
	}
	low := strings.ToLower(stderr)
	k := KindFailed
	switch {
	case exitCode == 12 || strings.Contains(low, "wrong password or no key found"):
		k = KindWrongPassword
	case exitCode == 11 || strings.Contains(low, "repository is already locked"):
		k = KindLocked
	case strings.Contains(low, "config file already exists"):
		k = KindExists
	// Before "no repository": restic 0.14 says "Is there a repository at the following
	// location?" also when the server could not be reached at all.
	case containsAny(low, "connection refused", "no such host", "i/o timeout", "network is unreachable",
		"connection reset", "tls handshake", "dial tcp", "no route to host", "server misbehaving"):
		k = KindNetwork
	case exitCode == 10 || strings.Contains(low, "is there a repository at the following location") ||
		strings.Contains(low, "unable to open config file") || strings.Contains(low, "repository does not exist"):
		k = KindNoRepository
	}
	return &Error{Op: op, Kind: k, Repository: repo, Message: msg, Fix: remedy(k, repo), Err: err}
}

func containsAny(s string, subs ...string) bool {
	for _, x := range subs {
		if strings.Contains(s, x) {
			return true
		}
	}
	return false
}

// fatalMessage picks restic's own explanation out of its stderr: the "Fatal:" line and what
// follows it, or else the last lines. Bounded, so a chatty failure cannot flood a
// notification.
func fatalMessage(stderr string) string {
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	var keep []string
	for i, l := range lines {
		if strings.HasPrefix(l, "Fatal: ") {
			keep = lines[i:]
			keep[0] = strings.TrimPrefix(keep[0], "Fatal: ")
			break
		}
	}
	if keep == nil {
		for _, l := range lines {
			// restic's chatter on stderr, not an explanation
			if l == "" || strings.HasPrefix(l, "reading repository password from stdin") ||
				strings.HasPrefix(l, "using temporary cache") || strings.HasPrefix(l, "create exclusive lock") {
				continue
			}
			keep = append(keep, l)
		}
		if len(keep) > 4 {
			keep = keep[len(keep)-4:]
		}
	}
	if len(keep) > 6 {
		keep = keep[:6]
	}
	out := strings.TrimSpace(strings.Join(keep, " / "))
	if len(out) > 600 {
		out = out[:600] + "…"
	}
	return out
}
