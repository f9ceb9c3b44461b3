package cli

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"snapback/internal/failure"
)

// readmeExitCodes reads the README's exit-code table: class → documented exit status.
func readmeExitCodes(t *testing.T) map[failure.Class]int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(data), "## Exit codes")
	if !ok {
		t.Fatal("README has no \"## Exit codes\" section")
	}
	table, _, _ = strings.Cut(table, "\n## ")
	codes := map[failure.Class]int{}
	for line := range strings.SplitSeq(table, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 4 {
			continue
		}
		code, err := strconv.Atoi(strings.TrimSpace(cells[1]))
		if err != nil {
			continue
		}
		for c := range strings.SplitSeq(cells[2], ",") {
			if c = strings.Trim(strings.TrimSpace(c), "`"); c != "" {
				if prev, dup := codes[failure.Class(c)]; dup {
					t.Errorf("README lists %s twice (exit %d and %d)", c, prev, code)
				}
				codes[failure.Class(c)] = code
			}
		}
	}
	return codes
}

// TestExitCodesAsDocumented drives every failure class through the command line's error
// path (as main runs it) and checks the process status against the README table, and that
// the error is printed once.
func TestExitCodesAsDocumented(t *testing.T) {
	documented := readmeExitCodes(t)
	for _, c := range failure.Classes() {
		want, ok := documented[c]
		if !ok {
			t.Errorf("README's exit-code table lacks class %s", string(c))
			continue
		}
		root := &cobra.Command{Use: "snapback", SilenceUsage: true, SilenceErrors: true,
			RunE: func(*cobra.Command, []string) error {
				// Classified where it is understood, wrapped on the way up.
				return fmt.Errorf("backup of 00008110-000A: %w", failure.New(c, errors.New("the cause")))
			}}
		root.SetArgs(nil)
		var stderr bytes.Buffer
		if got := execute(root, &stderr); got != want {
			t.Errorf("class %s exits %d; README says %d", string(c), got, want)
		}
		if n := strings.Count(stderr.String(), "the cause"); n != 1 || strings.Count(stderr.String(), "\n") != 1 {
			t.Errorf("class %s: printed %q; want one line naming the cause once", string(c), stderr.String())
		}
		delete(documented, c)
	}
	for c := range documented {
		t.Errorf("README documents class %s, which does not exist", string(c))
	}
	// A usage error from cobra itself (an unknown flag) is a usage error too.
	root := newRootCmd("test")
	root.SetArgs([]string{"backup", "--no-such-flag"})
	root.SetOut(&bytes.Buffer{})
	if got := execute(root, &bytes.Buffer{}); got != failure.ExitUsage {
		t.Errorf("an unknown flag exits %d; want %d", got, failure.ExitUsage)
	}
}

// TestReadmeStandsOnItsOwn: a clone has no ../shared, so the README links nothing outside the
// repository, and it still opens with the two commands a newcomer runs first.
func TestReadmeStandsOnItsOwn(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	if strings.Contains(s, "../") {
		t.Errorf("README points outside the repository (../):\n%s", s[max(0, strings.Index(s, "../")-80):][:160])
	}
	first := strings.Index(s, "```sh\n")
	if first < 0 || !strings.HasPrefix(s[first+len("```sh\n"):], "make demo") || !strings.Contains(s[first:first+300], "\nmake test") {
		t.Error("README does not open with `make demo` and `make test`")
	}
}
