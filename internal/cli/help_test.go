package cli

import (
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"snapback/internal/failure"
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

// TestLocationAndDirMeanOneThingEverywhere: in every command --location is a store location
// and --dir one backup folder, and a store command given --dir says to use --location.
func TestLocationAndDirMeanOneThingEverywhere(t *testing.T) {
	var walk func(c *cobra.Command)
	seen := map[string]int{}
	walk = func(c *cobra.Command) {
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if f.Hidden {
				return
			}
			switch f.Name {
			case "location":
				seen["location"]++
				if !strings.Contains(f.Usage, "store location") {
					t.Errorf("%s --location: %q does not say it is a store location", c.CommandPath(), f.Usage)
				}
			case "dir":
				seen["dir"]++
				if !strings.Contains(f.Usage, "backup folder") {
					t.Errorf("%s --dir: %q does not say it is one backup folder", c.CommandPath(), f.Usage)
				}
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCmd("test"))
	if seen["location"] < 8 || seen["dir"] < 5 {
		t.Errorf("found --location %d times and --dir %d times; the walk misses commands", seen["location"], seen["dir"])
	}
	for _, args := range [][]string{{"snapshots", "--dir", t.TempDir()}, {"prune", "--dir", t.TempDir()}, {"snapshots", "verify", "--dir", t.TempDir()}} {
		root := newRootCmd("test")
		root.SetArgs(args)
		root.SetOut(&strings.Builder{})
		err := root.Execute()
		if exitCode(err) != 2 || !strings.Contains(failure.Text(err), "--location") {
			t.Errorf("%v: %v (exit %d); want a usage error pointing to --location", args, err, exitCode(err))
		}
	}
}
