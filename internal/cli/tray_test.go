package cli

import (
	"context"
	"testing"
	"time"

	"snapback/tray"
)

func TestPreviewScript(t *testing.T) {
	now := time.Date(2026, 11, 22, 15, 0, 0, 0, time.UTC)
	want := map[int]string{0: "All devices backed up", 5: "Enter the passcode on Anna's iPhone", 11: "Backing up Anna's iPhone… 40%", 18: "Finishing backup of Anna's iPhone…"}
	for step, status := range want {
		if got := tray.Build(previewState(now, step)).Items[0].Label; got != status {
			t.Errorf("preview step %d status = %q, want %q", step, got, status)
		}
	}
	ctl, states, err := previewBackend(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	<-states
	ctl.Quit()
	for range states { // the script must close its channel once quit
	}
}
