package cli

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"snapback/internal/devicesim/backupsim"
	"snapback/internal/mobilebackup2"
	"snapback/internal/testenv"
)

// TestMain lets a test run this binary as the snapback command (SNAPBACK_CLI_ARGS holds the
// arguments, one per line), e.g. inside a real terminal.
func TestMain(m *testing.M) {
	if args, ok := os.LookupEnv("SNAPBACK_CLI_ARGS"); ok {
		root := newRootCmd("test")
		root.SetArgs(strings.Split(args, "\n"))
		os.Exit(execute(root, os.Stderr))
	}
	os.Exit(m.Run())
}

// screenLines is the pane's text with wrapped lines joined, blank lines dropped.
func screenLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, strings.TrimRight(l, " "))
		}
	}
	return out
}

// TestBackupProgressInRealTerminal runs `snapback backup` in a real pseudo-terminal (a tmux
// pane, 64 columns): while the device waits for its passcode the screen shows ONE status
// line, and when the backup is done nothing of the progress display is left, only the
// summary. The old display (a progress bar library plus its own description) wrapped in a
// narrow terminal and left copies and a second bar behind.
func TestBackupProgressInRealTerminal(t *testing.T) {
	tmux := testenv.RequireTool(t, "tmux")
	dir := cfgTestEnv(t)
	sim := startSim(t)
	id, _ := addDevice(t, sim, 11, "18.1", 90, backupsim.Options{Files: 300, TotalSize: 6 << 20, Seed: 13, PasscodeDelay: 1500 * time.Millisecond})

	sock := "snapback-test-" + filepath.Base(dir)
	tm := func(args ...string) (string, error) {
		out, err := exec.Command(tmux, append([]string{"-L", sock, "-f", "/dev/null"}, args...)...).CombinedOutput()
		return string(out), err
	}
	t.Cleanup(func() { tm("kill-server") })

	// The pane runs the command, then tells the test it ended and stays open for capture.
	script := filepath.Join(dir, "run.sh")
	var env strings.Builder
	for _, k := range []string{"XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_DATA_HOME", "XDG_RUNTIME_DIR", "USBMUXD_SOCKET_ADDRESS", "HOME", "PATH"} {
		fmt.Fprintf(&env, "export %s='%s'\n", k, os.Getenv(k))
	}
	fmt.Fprintf(&env, "export SNAPBACK_CONFIG=''\nexport SNAPBACK_CLI_ARGS='backup'\nexport TERM=xterm\n")
	body := fmt.Sprintf("#!/bin/sh\n%s'%s'\necho \"exit=$?\" > '%s'\n'%s' -L '%s' wait-for -S done\nread x\n",
		env.String(), os.Args[0], filepath.Join(dir, "exit"), tmux, sock)
	if err := os.WriteFile(script, []byte(body), 0o700); err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if out, err := tm("new-session", "-d", "-x", "64", "-y", "20", script); err != nil {
		t.Fatalf("tmux new-session: %v\n%s", err, out)
	}
	go func() {
		_, err := exec.CommandContext(ctx, tmux, "-L", sock, "-f", "/dev/null", "wait-for", "done").CombinedOutput()
		ended <- err
	}()
	capture := func() []string {
		t.Helper()
		out, err := tm("capture-pane", "-p", "-J")
		if err != nil {
			t.Fatalf("capture-pane: %v\n%s", err, out)
		}
		return screenLines(out)
	}

	// While the device asks for its passcode: one line on screen, nothing else.
	var screen []string
	// Nothing announces what a terminal shows: the pane is read until the prompt is there.
	if !testenv.Eventually(30*time.Second, func() bool {
		screen = capture()
		return strings.Contains(strings.Join(screen, "\n"), "passcode")
	}) {
		t.Fatalf("the passcode prompt never showed; screen:\n%s", strings.Join(screen, "\n"))
	}
	if len(screen) != 1 {
		t.Fatalf("while waiting for the passcode the screen holds %d lines, want one:\n%s", len(screen), strings.Join(screen, "\n"))
	}

	select {
	case err := <-ended:
		if err != nil {
			t.Fatalf("waiting for the command: %v", err)
		}
	case <-ctx.Done():
		t.Fatalf("the backup did not end; screen:\n%s", strings.Join(capture(), "\n"))
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "exit")); strings.TrimSpace(string(b)) != "exit=0" {
		t.Fatalf("backup %s; screen:\n%s", b, strings.Join(capture(), "\n"))
	}
	screen = capture()
	if len(screen) != 2 || !strings.HasPrefix(screen[0], "Backed up ") || !strings.HasPrefix(screen[1], "Snapshot ") ||
		!strings.Contains(screen[1], id.UDID) {
		t.Fatalf("after the backup the screen should hold only the summary; it holds:\n%s", strings.Join(screen, "\n"))
	}
}

// The status line shows one percentage and one rate, and never reaches the last column (a
// line that wraps cannot be redrawn in place).
func TestStatusLineFitsAndSaysThingsOnce(t *testing.T) {
	var sb strings.Builder
	v := &barView{w: &sb, width: 40}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, ev := range []mobilebackup2.Event{
		{Kind: mobilebackup2.EventPhase, Phase: mobilebackup2.PhaseConnecting, Percent: -1, Time: t0},
		{Kind: mobilebackup2.EventPasscodeRequested, Phase: mobilebackup2.PhaseWaitingForPasscode, Percent: -1, Time: t0},
		{Kind: mobilebackup2.EventProgress, Phase: mobilebackup2.PhaseTransferring, Percent: 10, BytesDone: 1e6, FilesDone: 10, Time: t0.Add(time.Second)},
		{Kind: mobilebackup2.EventProgress, Phase: mobilebackup2.PhaseTransferring, Percent: 55, BytesDone: 9e6, FilesDone: 90, Time: t0.Add(3 * time.Second)},
	} {
		sb.Reset()
		v.event(ev)
		out := sb.String()
		if !strings.HasPrefix(out, "\r\x1b[K") || strings.Contains(out, "\n") {
			t.Fatalf("event %d: %q is not one line redrawn in place", i, out)
		}
		line := strings.TrimPrefix(out, "\r\x1b[K")
		if n := utf8.RuneCountInString(line); n > 39 {
			t.Errorf("event %d: %d columns in a 40-column terminal: %q", i, n, line)
		}
		if strings.Count(line, "%") > 1 || strings.Count(line, "MB/s") > 1 {
			t.Errorf("event %d: %q says a figure twice", i, line)
		}
	}
	sb.Reset()
	v.result(runSummary{}, nil)
	if sb.String() != "\r\x1b[K" {
		t.Errorf("the end leaves %q, want the line erased", sb.String())
	}
}
