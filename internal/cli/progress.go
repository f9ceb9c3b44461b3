package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"snapback/internal/device"
	"snapback/internal/failure"
	"snapback/internal/mobilebackup2"
)

// progressView shows a run's events; result ends the view (nil error: success). upkeep says
// when the store's work after the result (scrub, preparing the next backup) starts and ends.
type progressView interface {
	event(mobilebackup2.Event)
	result(runSummary, error)
	upkeep(running bool)
}

// upkeepText is shown while the store works after the result: the command has not exited,
// and the user should know why and that stopping it is harmless.
const upkeepText = "Checking stored files and preparing the next backup (interrupting is safe)..."

// runSummary is what a finished backup reports on the command line.
type runSummary struct {
	UDID        string
	Name        string
	ProductType string
	Device      device.Info
	Dir         string // the committed latest backup (store) or the written folder (--dir)
	Location    string // the store location ("" with --dir)
	Snapshot    string // the committed snapshot's ID ("" with --dir)
	Full        bool
	Files       int64   // files the device sent
	Bytes       int64   // bytes the device sent
	Size        int64   // size of the committed backup (store only)
	Seconds     float64 // duration of the run
	Warnings    []string
	Unreadable  []mobilebackup2.UnreadableFile // files the device could not read in this run
}

// render shows engine events on view. The engine must never wait on the terminal: events
// go through a bounded channel that drops intermediate ones under pressure, and one
// goroutine renders them. done closes the stream and waits for the last event to show.
func render(view progressView) (events func(mobilebackup2.Event), done func()) {
	ch := make(chan mobilebackup2.Event, 256)
	rendered := make(chan struct{})
	go func() {
		defer close(rendered)
		for ev := range ch {
			view.event(ev)
		}
	}()
	return throttle(mobilebackup2.ChannelSink(ch), 100*time.Millisecond), func() {
		close(ch)
		<-rendered
	}
}

// throttle forwards at most one progress event per interval (by event time), and every
// other event at once: every event carries the totals, so nothing is lost, and the renderer
// is not woken for each of tens of thousands of small files. The engine calls it serially.
func throttle(next func(mobilebackup2.Event), every time.Duration) func(mobilebackup2.Event) {
	var last time.Time
	return func(ev mobilebackup2.Event) {
		if ev.Kind == mobilebackup2.EventProgress && !last.IsZero() && ev.Time.Sub(last) < every {
			return
		}
		last = ev.Time
		next(ev)
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// --- terminal: one status line, redrawn in place ---

// barView draws ONE line (bar, percent, phase, bytes, files, rate) and redraws it in place
// with a carriage return and erase-line. The line never exceeds the terminal's width: a
// wrapped line cannot be redrawn in place and leaves copies behind. The passcode prompt is
// shown in the same line, not as a second bar.
type barView struct {
	w     io.Writer
	width int // columns; 0: ask the terminal

	drawn    bool
	passcode bool
	start    time.Time // first event with bytes: the base of the MB/s figure
	base     int64
}

func (v *barView) columns() int {
	if v.width > 0 {
		return v.width
	}
	if f, ok := v.w.(*os.File); ok {
		if c, _, err := term.GetSize(int(f.Fd())); err == nil && c > 0 {
			return c
		}
	}
	return 80
}

func (v *barView) event(ev mobilebackup2.Event) {
	switch ev.Kind {
	case mobilebackup2.EventPasscodeRequested:
		v.passcode = true
	case mobilebackup2.EventPasscodeDismissed:
		v.passcode = false
	case mobilebackup2.EventFinished, mobilebackup2.EventFailed:
		v.clear()
		return
	}
	if ev.Phase != mobilebackup2.PhaseWaitingForPasscode && ev.Kind != mobilebackup2.EventPasscodeRequested && ev.BytesDone > 0 {
		v.passcode = false
	}
	v.draw(v.line(ev))
}

// line formats the status line for ev (without width limits).
func (v *barView) line(ev mobilebackup2.Event) string {
	if v.passcode {
		return "Enter the passcode on the device to start the backup…"
	}
	const cells = 24
	pct := ev.Percent
	if pct < 0 && ev.BytesExpected > 0 {
		pct = 100 * float64(ev.BytesDone) / float64(ev.BytesExpected)
	}
	bar := strings.Repeat("·", cells)
	pcts := "   "
	if pct >= 0 {
		pct = min(pct, 100)
		n := int(pct / 100 * cells)
		bar = strings.Repeat("█", n) + strings.Repeat("·", cells-n)
		pcts = fmt.Sprintf("%3.0f%%", pct)
	}
	s := fmt.Sprintf("[%s] %s  %-13s %s  %d files", bar, pcts, ev.Phase, mb(ev.BytesDone), ev.FilesDone)
	if ev.BytesDone > 0 && v.start.IsZero() {
		v.start, v.base = ev.Time, ev.BytesDone
	} else if d := ev.Time.Sub(v.start).Seconds(); !v.start.IsZero() && d > 0.5 {
		s += fmt.Sprintf("  %.1f MB/s", float64(ev.BytesDone-v.base)/1e6/d)
	}
	return s
}

func (v *barView) draw(s string) {
	if max := v.columns() - 1; max > 0 {
		if r := []rune(s); len(r) > max {
			s = string(r[:max])
		}
	}
	fmt.Fprint(v.w, "\r\x1b[K"+s)
	v.drawn = true
}

// clear erases the status line, leaving the cursor at the start of an empty line.
func (v *barView) clear() {
	if v.drawn {
		fmt.Fprint(v.w, "\r\x1b[K")
		v.drawn = false
	}
}

// result erases the status line; the summary is the caller's.
func (v *barView) result(runSummary, error) { v.clear() }

// upkeep shows upkeepText on the status line while it lasts, then erases it: afterwards
// the screen holds the summary alone.
func (v *barView) upkeep(running bool) {
	if running {
		v.draw(upkeepText)
	} else {
		v.clear()
	}
}

// --- not a terminal: plain lines on phase changes and every 10 % ---

type lineView struct {
	w       io.Writer
	phase   mobilebackup2.Phase
	started bool
	decile  int
}

func (v *lineView) event(ev mobilebackup2.Event) {
	switch ev.Kind {
	case mobilebackup2.EventPasscodeRequested:
		fmt.Fprintln(v.w, "waiting for the passcode on the device")
		return
	case mobilebackup2.EventPasscodeDismissed, mobilebackup2.EventFinished, mobilebackup2.EventFailed:
		return
	}
	if !v.started || ev.Phase != v.phase {
		v.started, v.phase = true, ev.Phase
		fmt.Fprintf(v.w, "%s\n", ev.Phase)
	}
	if d := int(ev.Percent / 10); ev.Percent >= 0 && d > v.decile {
		v.decile = d
		fmt.Fprintf(v.w, "%3.0f%%  %s  %d files\n", ev.Percent, mb(ev.BytesDone), ev.FilesDone)
	}
}

func (v *lineView) result(runSummary, error) {}

func (v *lineView) upkeep(running bool) {
	if running {
		fmt.Fprintln(v.w, upkeepText)
	}
}

// printResult says what was backed up; its last line names the backup folder (and, in the
// store, the snapshot ID) so that scripts and people find the backup.
func printResult(w io.Writer, s runSummary) {
	kind := "incremental"
	if s.Full {
		kind = "full"
	}
	rate := ""
	if s.Seconds > 0 {
		rate = fmt.Sprintf(", %.1f MB/s", float64(s.Bytes)/1e6/s.Seconds)
	}
	size := ""
	if s.Size > 0 {
		size = fmt.Sprintf("; backup size %s", humanBytes(s.Size))
	}
	fmt.Fprintf(w, "Backed up %s (%s, %s): %s backup, %d files and %s transferred in %.1fs%s%s\n",
		s.Name, s.ProductType, s.UDID, kind, s.Files, mb(s.Bytes), s.Seconds, rate, size)
	for _, x := range s.Warnings {
		fmt.Fprintf(w, "warning: %s\n", x)
	}
	if s.Snapshot != "" {
		fmt.Fprintf(w, "Snapshot %s committed: %s\n", s.Snapshot, s.Dir)
	} else {
		fmt.Fprintf(w, "Backup folder: %s\n", s.Dir)
	}
}

func mb(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }

// --- --json: one JSON object per line ---

type jsonView struct{ enc *json.Encoder }

type jsonError struct {
	Code        string `json:"code"`
	Message     string `json:"message"`
	Remedy      string `json:"remedy,omitempty"`
	Retryable   bool   `json:"retryable"`
	DeviceCode  int64  `json:"device_code,omitempty"`
	Description string `json:"description,omitempty"`
}

func toJSONError(err error) *jsonError {
	if err == nil {
		return nil
	}
	e, ok := failure.As(err)
	if !ok {
		return &jsonError{Code: string(failure.ClassOf(err)), Message: err.Error(), Remedy: failure.Remedy(err)}
	}
	return &jsonError{Code: string(e.Class), Message: e.Error(), Remedy: e.Remedy(), Retryable: e.Retryable(),
		DeviceCode: e.DeviceCode, Description: e.Detail}
}

func (v *jsonView) event(ev mobilebackup2.Event) {
	_ = v.enc.Encode(struct {
		mobilebackup2.Event
		Error *jsonError `json:"error,omitempty"`
	}{ev, toJSONError(errOrNil(ev.Err))})
}

func errOrNil(e *failure.Error) error {
	if e == nil {
		return nil
	}
	return e
}

// jsonResult is --json's last line.
type jsonResult struct {
	Kind     string     `json:"kind"`
	OK       bool       `json:"ok"`
	UDID     string     `json:"udid,omitempty"`
	Dir      string     `json:"dir,omitempty"`      // the committed latest backup folder
	Location string     `json:"location,omitempty"` // the store location
	Snapshot string     `json:"snapshot,omitempty"` // the committed snapshot's ID
	Full     bool       `json:"full"`
	Files    int64      `json:"files"`
	Bytes    int64      `json:"bytes"`          // transferred in this run
	Size     int64      `json:"size,omitempty"` // of the committed backup
	Seconds  float64    `json:"seconds"`
	Device   any        `json:"device,omitempty"`
	Warnings []string   `json:"warnings,omitempty"`
	Error    *jsonError `json:"error,omitempty"`
}

func (v *jsonView) upkeep(bool) {} // the result line was the answer; a damage line may follow

func (v *jsonView) result(s runSummary, err error) {
	var dev any
	if s.Device.UDID != "" {
		dev = s.Device
	}
	_ = v.enc.Encode(jsonResult{Kind: "result", OK: err == nil, UDID: s.UDID, Dir: s.Dir, Location: s.Location,
		Snapshot: s.Snapshot, Full: s.Full, Files: s.Files, Bytes: s.Bytes, Size: s.Size, Seconds: s.Seconds,
		Device: dev, Warnings: s.Warnings, Error: toJSONError(err)})
}
