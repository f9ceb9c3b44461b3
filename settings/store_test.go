package settings

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// watchFixture runs Store.Watch on a real file in a temp dir with real fsnotify.
type watchFixture struct {
	t       *testing.T
	path    string
	st      *Store
	changes chan Change
}

func newWatchFixture(t *testing.T, initial string) *watchFixture {
	t.Helper()
	p := filepath.Join(t.TempDir(), "snapback", "config.yaml")
	os.MkdirAll(filepath.Dir(p), 0o700)
	if err := os.WriteFile(p, []byte(initial), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	st.SetDebounce(50 * time.Millisecond)
	f := &watchFixture{t: t, path: p, st: st, changes: make(chan Change, 16)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- st.Watch(ctx, func(c Change) { f.changes <- c }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != context.Canceled {
			t.Errorf("Watch returned %v", err)
		}
	})
	select { // the test edits the file next: the watch must see it
	case <-st.Watching():
	case err := <-done:
		done <- err // for the cleanup
		t.Fatalf("Watch ended before it followed the file: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not start following the file within 5 s")
	}
	return f
}

func (f *watchFixture) next() Change {
	f.t.Helper()
	select {
	case c := <-f.changes:
		return c
	case <-time.After(5 * time.Second):
		f.t.Fatal("no reload within 5s")
		return Change{}
	}
}

func TestWatchAppliesLiveEditAndKeepsLastGoodOnBrokenEdit(t *testing.T) {
	f := newWatchFixture(t, "transport: usb\n")
	if f.st.Current().Global.Transport != TransportUSB {
		t.Fatal("initial not loaded")
	}

	// In-place edit (truncate + write, as `echo >` does).
	os.WriteFile(f.path, []byte("transport: wifi\n"), 0o600)
	if c := f.next(); c.Err != nil || c.Settings.Global.Transport != TransportWiFi {
		t.Fatalf("live edit: %+v", c)
	}
	if f.st.Current().Global.Transport != TransportWiFi {
		t.Fatal("Current not updated")
	}

	// A broken edit is reported with its key and the last good settings stay.
	os.WriteFile(f.path, []byte("transport: wifi\nconditions: {min_battery: 900}\n"), 0o600)
	c := f.next()
	if c.Err == nil || !strings.Contains(c.Err.Error(), "conditions.min_battery") {
		t.Fatalf("broken edit: %+v", c)
	}
	if f.st.Current().Global.Transport != TransportWiFi || f.st.Current().Global.Conditions.MinBattery != 20 {
		t.Fatal("broken edit changed the current settings")
	}

	// Editor-style save: write a temp file, rename it over the settings file.
	tmp := f.path + ".swp"
	os.WriteFile(tmp, []byte("transport: any\nschedule: {window: '10:00-12:00'}\n"), 0o600)
	if err := os.Rename(tmp, f.path); err != nil {
		t.Fatal(err)
	}
	if c := f.next(); c.Err != nil || c.Settings.Global.Schedule.Window != (Window{600, 720}) {
		t.Fatalf("rename save: %+v", c)
	}

	// Remove and create again (some editors, and `rm; cp`): still followed.
	os.Remove(f.path)
	os.WriteFile(f.path, []byte("transport: usb\n"), 0o600)
	c = f.next()
	for c.Err != nil { // the remove may be seen on its own before the create
		c = f.next()
	}
	if c.Settings.Global.Transport != TransportUSB {
		t.Fatalf("remove+create: %+v", c)
	}

	// Many quick writes collapse into one reload by the debounce.
	for i := range 10 {
		os.WriteFile(f.path, []byte("conditions: {min_battery: "+string(rune('0'+i))+"}\n"), 0o600)
	}
	c = f.next()
	if c.Err != nil || c.Settings.Global.Conditions.MinBattery != 9 {
		t.Fatalf("burst: %+v", c)
	}
	select {
	case extra := <-f.changes:
		t.Fatalf("burst caused a second reload: %+v", extra)
	case <-time.After(200 * time.Millisecond):
	}
}

func TestOpenInvalidFileRunsOnDefaultsAndReports(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(p, []byte("transport: x\n"), 0o600)
	st, err := Open(p)
	if err == nil || st == nil || st.Current().Global.Transport != TransportAny {
		t.Fatalf("Open: %v %v", st, err)
	}
}
