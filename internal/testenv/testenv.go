// Package testenv holds the one rule every test that needs an outside tool or privilege
// follows: under CI=true a missing tool fails the test (CI installs everything the suite
// needs, so a missing tool is a broken CI script, not a reason to pass); elsewhere the test
// skips and says loudly what to install.
package testenv

import (
	"os"
	"os/exec"
	"testing"
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
