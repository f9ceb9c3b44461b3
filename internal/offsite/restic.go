package offsite

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"snapback/internal/failure"
	"snapback/settings"
)

// Restic drives one restic repository through restic's command-line interface.
//
// # How the password reaches restic
//
// restic reads the repository password from its standard input when stdin is not a
// terminal ("reading repository password from stdin", restic 0.14 and later; one line, also
// for `init`). Snapback writes it into a pipe that is restic's stdin and nothing else:
// it is never in restic's argument list or environment (both readable in /proc by the same
// user) and never in a file. The alternative, `--password-command` naming `snapback`
// itself, would start a second Snapback process for every restic call and need a keychain
// session in that child too; the pipe needs neither. The environment restic gets is the
// user's, minus every RESTIC_PASSWORD* and RESTIC_REPOSITORY* variable, so a stray one
// cannot override the keychain's password or the configured repository.
//
// Backend credentials (AWS_ACCESS_KEY_ID, B2_ACCOUNT_KEY, an SSH key for sftp:) are the
// backend's business and come from the user's environment or ssh configuration as restic
// documents them.
type Restic struct {
	// Binary is the restic executable; "" means "restic" from PATH.
	Binary string
	// Repository is the restic repository address: a folder, sftp:, rest:, s3:, rclone:, ...
	Repository string
	// Password returns the repository password (from the keychain, see PasswordAccount).
	Password func(ctx context.Context) (string, error)
	// LimitUploadKiB caps the upload rate in KiB/s (restic --limit-upload); 0 = no limit.
	LimitUploadKiB int
	// Logger receives operational messages; nil discards them.
	Logger *slog.Logger
}

// PasswordAccount is the keychain account (below settings.KeyringService) that holds the
// password of repository. One repository, one password, whichever devices share it.
func PasswordAccount(repository string) string { return "offsite:" + repository }

// KeychainPassword returns a Password function that reads repository's password from secrets.
func KeychainPassword(secrets settings.Secrets, repository string) func(context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		return secrets.Get(ctx, PasswordAccount(repository))
	}
}

func (r *Restic) binary() string {
	if r.Binary == "" {
		return "restic"
	}
	return r.Binary
}

func (r *Restic) log() *slog.Logger {
	if r.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Logger
}

// call is one restic invocation.
type call struct {
	op       string
	args     []string
	dir      string                // working directory; "" = inherit
	password string                // "" = fetch with r.Password
	stdout   func(io.Reader) error // consumes stdout; nil = collect into out
	out      []byte
}

// run executes restic once with the password on stdin and classifies a failure. A repository
// locked by a restic process that died on this computer (a push killed mid-upload) is
// unlocked with `restic unlock`, which removes only stale locks, and the call retried once.
func (r *Restic) run(ctx context.Context, c *call) error {
	if r.Repository == "" {
		return NotConfigured(c.op)
	}
	if c.password == "" {
		pw, err := r.password(ctx, c.op)
		if err != nil {
			return err
		}
		c.password = pw
	}
	err := r.runOnce(ctx, c)
	if KindOf(err) != KindLocked || c.op == "unlock" {
		return err
	}
	r.log().Info("repository locked; removing stale locks", "repository", r.Repository, "op", c.op)
	if uerr := r.runOnce(ctx, &call{op: "unlock", args: []string{"unlock"}, password: c.password}); uerr != nil {
		return errors.Join(err, uerr)
	}
	c.out = nil
	return r.runOnce(ctx, c)
}

func (r *Restic) password(ctx context.Context, op string) (string, error) {
	if r.Password == nil {
		return "", newError(op, KindNoPassword, r.Repository, "no password source for the repository", nil)
	}
	pw, err := r.Password(ctx)
	if errors.Is(err, settings.ErrSecretNotFound) {
		return "", newError(op, KindNoPassword, r.Repository, "the keychain holds no password for this repository", err)
	}
	if err != nil {
		// The keychain could not answer (locked, no Secret Service): its own remedy applies.
		// A KeyringError's text carries its remedy too; keep its cause only, so the remedy
		// is shown once.
		var ke *settings.KeyringError
		if errors.As(err, &ke) {
			return "", &failure.Error{Class: failure.Keychain, Detail: "keyring " + ke.Op, Cause: ke.Err,
				Fix: strings.TrimPrefix(ke.Remedy(), "to fix: ")}
		}
		return "", failure.New(failure.Keychain, err)
	}
	if pw == "" {
		return "", newError(op, KindNoPassword, r.Repository, "the stored repository password is empty", nil)
	}
	return pw, nil
}

// stderrLimit bounds what is kept of restic's stderr (its tail holds the Fatal line).
const stderrLimit = 64 << 10

func (r *Restic) runOnce(ctx context.Context, c *call) error {
	args := []string{"--repo", r.Repository}
	if r.LimitUploadKiB > 0 {
		args = append(args, "--limit-upload", strconv.Itoa(r.LimitUploadKiB))
	}
	args = append(args, c.args...)
	cmd := exec.CommandContext(ctx, r.binary(), args...)
	cmd.Dir = c.dir
	cmd.Env = cleanEnv(os.Environ())
	// One line: restic reads a single line from a non-terminal stdin (also for init).
	cmd.Stdin = strings.NewReader(c.password + "\n")
	// On cancellation ask restic to stop the way Ctrl-C does: it removes its lock and
	// exits. Kill it only if it does not within WaitDelay.
	cmd.Cancel = func() error {
		if runtime.GOOS == "windows" {
			return cmd.Process.Kill()
		}
		return cmd.Process.Signal(os.Interrupt)
	}
	cmd.WaitDelay = 20 * time.Second
	var stderr tailBuffer
	stderr.max = stderrLimit
	cmd.Stderr = &stderr
	var stdout io.ReadCloser
	var outBuf bytes.Buffer
	if c.stdout != nil {
		p, err := cmd.StdoutPipe()
		if err != nil {
			return newError(c.op, KindFailed, r.Repository, err.Error(), err)
		}
		stdout = p
	} else {
		cmd.Stdout = &outBuf
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		var ee *exec.Error
		if errors.As(err, &ee) {
			return newError(c.op, KindMissing, r.Repository, fmt.Sprintf("cannot run %s: %v", r.binary(), ee.Err), err)
		}
		return newError(c.op, KindFailed, r.Repository, err.Error(), err)
	}
	var herr error
	if stdout != nil {
		herr = c.stdout(stdout)
		// Drain what the handler left so restic never blocks on a full pipe.
		io.Copy(io.Discard, stdout)
	}
	werr := cmd.Wait()
	r.log().Debug("restic", "op", c.op, "took", time.Since(start).Round(time.Millisecond), "err", werr)
	c.out = outBuf.Bytes()
	if werr != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("off-site %s: %w", c.op, ctx.Err())
		}
		code := -1
		var xe *exec.ExitError
		if errors.As(werr, &xe) {
			code = xe.ExitCode()
		}
		return classify(c.op, r.Repository, code, stderr.String(), werr).classified()
	}
	if herr != nil {
		return newError(c.op, KindFailed, r.Repository, "reading restic's output: "+herr.Error(), herr)
	}
	return nil
}

// jsonLine returns the first line of out that is JSON: restic prints some plain text on
// stdout even with --json ("reading repository password from stdin").
func jsonLine(out []byte) []byte {
	for len(out) > 0 {
		var line []byte
		line, out, _ = bytes.Cut(out, []byte("\n"))
		if l := bytes.TrimSpace(line); len(l) > 0 && (l[0] == '[' || l[0] == '{') {
			return l
		}
	}
	return nil
}

// cleanEnv drops every variable through which restic could take a password or repository
// other than the ones Snapback gives it.
func cleanEnv(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(name) {
		case "RESTIC_PASSWORD", "RESTIC_PASSWORD_FILE", "RESTIC_PASSWORD_COMMAND",
			"RESTIC_REPOSITORY", "RESTIC_REPOSITORY_FILE", "RESTIC_KEY_HINT":
			continue
		}
		out = append(out, kv)
	}
	return out
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// Init creates the repository, encrypted with password (which the caller has stored in the
// keychain or is about to). A repository already at the address is KindExists.
func (r *Restic) Init(ctx context.Context, password string) error {
	if password == "" {
		return newError("init", KindNoPassword, r.Repository, "an empty password protects nothing", nil)
	}
	return r.run(ctx, &call{op: "init", args: []string{"init"}, password: password})
}

// Open checks that the repository exists and opens with password (for `init --existing`).
func (r *Restic) Open(ctx context.Context, password string) error {
	c := &call{op: "open", args: []string{"cat", "config"}, password: password}
	return r.run(ctx, c)
}

// Unlock removes stale locks (restic's own test: the locking process died on this host, or
// the lock is older than 30 minutes). Live locks are left alone.
func (r *Restic) Unlock(ctx context.Context) error {
	return r.run(ctx, &call{op: "unlock", args: []string{"unlock"}})
}

// CheckOptions control Check.
type CheckOptions struct {
	// ReadDataSubset also reads and verifies this part of the pack files ("10%", "1/5");
	// "100%" reads everything. "" checks the structure only.
	ReadDataSubset string
}

// Check runs `restic check`: the repository's structure (and, with ReadDataSubset, its data)
// is consistent. Packs a killed upload left unreferenced are not an error (restic reports
// them as "additional files" that `prune` removes).
func (r *Restic) Check(ctx context.Context, o CheckOptions) (string, error) {
	args := []string{"check"}
	if o.ReadDataSubset != "" {
		args = append(args, "--read-data-subset", o.ReadDataSubset)
	}
	c := &call{op: "check", args: args}
	err := r.run(ctx, c)
	return string(c.out), err
}

// Snapshot is one restic snapshot Snapback made, with its tags decoded.
type Snapshot struct {
	ID       string    `json:"id"`
	ShortID  string    `json:"short_id"`
	Time     time.Time `json:"time"`
	Hostname string    `json:"hostname"`
	Paths    []string  `json:"paths"`
	Tags     []string  `json:"tags"`

	// From the tags.
	UDID       string `json:"-"`
	DeviceName string `json:"-"`
	SnapbackID string `json:"-"` // the Snapback snapshot ID it copies
}

// Tag prefixes of Snapback's restic snapshots.
const (
	TagUDID     = "udid:"
	TagDevice   = "device:"
	TagSnapshot = "snapback:"
)

// Snapshots lists the repository's snapshots of udid ("" = every device's), oldest first.
func (r *Restic) Snapshots(ctx context.Context, udid string) ([]Snapshot, error) {
	args := []string{"snapshots", "--json"}
	if udid != "" {
		args = append(args, "--tag", TagUDID+udid)
	}
	c := &call{op: "list", args: args}
	if err := r.run(ctx, c); err != nil {
		return nil, err
	}
	var out []Snapshot
	if err := json.Unmarshal(jsonLine(c.out), &out); err != nil {
		return nil, newError("list", KindFailed, r.Repository, "restic snapshots --json: "+err.Error(), err)
	}
	for i := range out {
		for _, t := range out[i].Tags {
			switch {
			case strings.HasPrefix(t, TagUDID):
				out[i].UDID = strings.TrimPrefix(t, TagUDID)
			case strings.HasPrefix(t, TagDevice):
				out[i].DeviceName = strings.TrimPrefix(t, TagDevice)
			case strings.HasPrefix(t, TagSnapshot):
				out[i].SnapbackID = strings.TrimPrefix(t, TagSnapshot)
			}
		}
	}
	sortSnapshots(out)
	return out, nil
}

// Keep is a restic retention rule set (`forget --keep-*`); zero fields are not passed.
type Keep struct {
	Last, Hourly, Daily, Weekly, Monthly, Yearly int
}

// IsZero reports whether no rule is set (forget would then keep everything).
func (k Keep) IsZero() bool { return k == Keep{} }

func (k Keep) args() []string {
	var a []string
	add := func(flag string, n int) {
		if n > 0 {
			a = append(a, flag, strconv.Itoa(n))
		}
	}
	add("--keep-last", k.Last)
	add("--keep-hourly", k.Hourly)
	add("--keep-daily", k.Daily)
	add("--keep-weekly", k.Weekly)
	add("--keep-monthly", k.Monthly)
	add("--keep-yearly", k.Yearly)
	return a
}

// Forget applies keep to udid's snapshots and prunes the data no snapshot needs any more.
// All snapshots of the device form one group (`--group-by ”`): grouping by tags would put
// every snapshot in its own group, since each carries its own Snapback ID, and keep them all.
// With no rule set it does nothing. It returns the IDs restic removed.
func (r *Restic) Forget(ctx context.Context, udid string, keep Keep) ([]string, error) {
	if keep.IsZero() {
		return nil, nil
	}
	if udid == "" {
		return nil, errors.New("off-site forget: no device given")
	}
	args := append([]string{"forget", "--json", "--prune", "--tag", TagUDID + udid, "--group-by", ""}, keep.args()...)
	c := &call{op: "forget", args: args}
	if err := r.run(ctx, c); err != nil {
		return nil, err
	}
	// The JSON report is one line; --prune adds plain text after it.
	line := jsonLine(c.out)
	var groups []struct {
		Remove []Snapshot `json:"remove"`
	}
	if err := json.Unmarshal(line, &groups); err != nil {
		return nil, nil // restic did its work; the report is only informative
	}
	var removed []string
	for _, g := range groups {
		for _, s := range g.Remove {
			removed = append(removed, s.ID)
		}
	}
	return removed, nil
}
