// Package testenv holds the one rule every test that needs an outside tool or privilege
// follows: under CI=true a missing tool fails the test (CI installs everything the suite
// needs, so a missing tool is a broken CI script, not a reason to pass); elsewhere the test
// skips and says loudly what to install.
package testenv

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

// InCI reports whether the tests run in CI (CI=true), where nothing may be skipped.
func InCI() bool { return os.Getenv("CI") == "true" }

// RequireTool returns the path of each named program, or fails (CI) / skips (elsewhere).
// It returns the path of the first tool.
func RequireTool(t testing.TB, tools ...string) string {
	t.Helper()
	first := ""
	for i, tool := range tools {
		p, err := exec.LookPath(tool)
		if err != nil {
			Unavailable(t, "%s is not installed (%v); .ci/run installs it", tool, err)
		}
		if i == 0 {
			first = p
		}
	}
	return first
}

// Unavailable fails the test under CI=true and skips it elsewhere, with the reason.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if InCI() {
		t.Fatalf("required under CI=true: "+format, args...)
	}
	t.Skipf("SKIP (would fail under CI=true): "+format, args...)
}

// pollEvery is how often Eventually re-checks a condition.
const pollEvery = 5 * time.Millisecond

// Eventually reports whether cond holds within timeout, checking it on a ticker. Tests use it
// (or WaitFor) where no event or channel announces the condition: never a bare time.Sleep to
// wait for another goroutine or process.
func Eventually(timeout time.Duration, cond func() bool) bool {
	if cond() {
		return true
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			if cond() {
				return true
			}
		case <-deadline.C:
			return cond()
		}
	}
}

// WaitFor fails the test unless cond holds within timeout; what names the awaited state in
// the failure.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Eventually(timeout, cond) {
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}
