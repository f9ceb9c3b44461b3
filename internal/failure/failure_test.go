package failure

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
)

func TestClassifiedOnceAndShownOnce(t *testing.T) {
	first := &Error{Class: DeviceLocked, DeviceCode: 208, Detail: "device stayed locked"}
	// Every layer above may "classify" again; the first classification must win.
	again := New(LinkLost, fmt.Errorf("run: %w", first))
	if again != first {
		t.Fatalf("reclassified: %v", again)
	}
	wrapped := fmt.Errorf("backup of Anna's iPhone: %w", again)
	text := Text(wrapped)
	if n := strings.Count(text, "208"); n != 1 {
		t.Errorf("208 appears %d times in %q", n, text)
	}
	if n := strings.Count(text, "enter its passcode"); n != 1 {
		t.Errorf("remedy appears %d times in %q", n, text)
	}
	if strings.Contains(wrapped.Error(), "enter its passcode") {
		t.Errorf("Error() carries the remedy: %q", wrapped.Error())
	}
	if !errors.Is(wrapped, DeviceLocked) || errors.Is(wrapped, LinkLost) {
		t.Errorf("errors.Is by class is wrong for %v", wrapped)
	}
	if ExitCode(wrapped) != ExitLocked {
		t.Errorf("exit code %d", ExitCode(wrapped))
	}
}

func TestFromOS(t *testing.T) {
	cases := []struct {
		err  error
		want Class
	}{
		{&os.PathError{Op: "write", Path: "/b/x", Err: syscall.ENOSPC}, NoSpace},
		{&os.PathError{Op: "open", Path: "/b/x", Err: syscall.EROFS}, ReadOnly},
		{&os.PathError{Op: "open", Path: "/b/x", Err: syscall.EACCES}, PermissionDenied},
		{&os.LinkError{Op: "rename", Old: "a", New: "b", Err: syscall.EIO}, LocalIO},
	}
	for _, c := range cases {
		got := FromOS(c.err)
		if got.Class != c.want {
			t.Errorf("%v: class %s, want %s", c.err, got.Class, c.want)
		}
		if strings.Contains(strings.ToLower(Text(got)), "cable") {
			t.Errorf("%v: a disk error mentions the cable: %s", c.err, Text(got))
		}
	}
}

func TestEveryClassHasMessageAndExitCode(t *testing.T) {
	for c, i := range classes {
		if i.msg == "" || i.exit == 0 {
			t.Errorf("class %s: message %q exit %d", c, i.msg, i.exit)
		}
	}
	if ClassOf(context.Canceled) != Cancelled || ExitCode(context.Canceled) != ExitCancelled {
		t.Errorf("context.Canceled: %s %d", ClassOf(context.Canceled), ExitCode(context.Canceled))
	}
	if ExitCode(errors.New("plain")) != ExitFailure || ExitCode(nil) != ExitOK {
		t.Error("plain errors exit 1, nil exits 0")
	}
}

func TestWrappedClassIsAClassification(t *testing.T) {
	err := fmt.Errorf("lock /b/lock: %w", DeviceBusy)
	e, ok := As(err)
	if !ok || e.Class != DeviceBusy || ExitCode(err) != ExitBusy {
		t.Fatalf("As(%v) = %v, %v", err, e, ok)
	}
	if strings.Count(e.Error(), DeviceBusy.Message()) != 1 {
		t.Errorf("message said twice: %q", e.Error())
	}
}
