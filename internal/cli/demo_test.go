package cli

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestDemoHeadless runs `snapback demo --headless` on a small simulated iPhone: the app
// (the same App as the daemon and the tray) backs it up by itself, a manual run follows,
// and both backups are listed; the narration shows what each run transferred.
func TestDemoHeadless(t *testing.T) {
	dir := cfgTestEnv(t)
	t.Setenv("USBMUXD_SOCKET_ADDRESS", "") // runDemo points it at its own simulator
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out syncBuffer
	err := runDemo(ctx, &out, demoOptions{home: dir, files: 60, size: 2 << 20, passcode: 50 * time.Millisecond})
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	s := out.String()
	if strings.Count(s, "committed as snapshot") != 2 || !strings.Contains(s, "(latest, Apple format)") ||
		!strings.Contains(s, "Done: 2 backups (1 full, 1 incremental)") || strings.Count(s, "NOTIFICATION") < 2 {
		t.Fatalf("demo output:\n%s", s)
	}
}
