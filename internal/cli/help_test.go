package cli

import (
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// valueName is what a flag's value may be called in help: one word (UDID, DIR, string,
// duration). Cobra takes the first `back-quoted` text of a usage as the value name, so a
// usage like "see `snapback devices`" renders as "--udid snapback devices".
var valueName = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9_]*)?$`)

// TestHelpFlagValueNames walks the whole command tree and checks how every flag renders in
// help: its value name is one word and its text keeps no stray back-quotes.
func TestHelpFlagValueNames(t *testing.T) {
	var walk func(c *cobra.Command)
	checked := 0
	walk = func(c *cobra.Command) {
		check := func(f *pflag.Flag) {
			checked++
			name, usage := pflag.UnquoteUsage(f)
			if !valueName.MatchString(name) {
				t.Errorf("%s --%s renders its value as %q (usage %q)", c.CommandPath(), f.Name, name, f.Usage)
			}
			if strings.Contains(usage, "`") {
				t.Errorf("%s --%s help keeps a back-quote: %q", c.CommandPath(), f.Name, usage)
			}
		}
		c.LocalFlags().VisitAll(check)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCmd("test"))
	if checked < 20 {
		t.Fatalf("only %d flags found; the walk is broken", checked)
	}
}
