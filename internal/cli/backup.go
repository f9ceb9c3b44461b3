package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"snapback/internal/app"
	"snapback/internal/device"
	"snapback/internal/engine"
	"snapback/internal/failure"
	"snapback/internal/mobilebackup2"
	"snapback/internal/store"
	"snapback/settings"
)

type backupFlags struct {
	udid   string
	full   bool
	dir    string
	asJSON bool
	devs   *device.Host // how the device is found (settings: wifi_discovery)
}

func newBackupCmd() *cobra.Command {
	var f backupFlags
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Back up a device now",
		Long: "Back up a connected iPhone or iPad now. Without --dir the backup goes into the device's\n" +
			"snapshot store (its location from the settings): the previous backup becomes a snapshot,\n" +
			"the new one is committed only once complete and verified, and retention runs. With --dir\n" +
			"it writes a plain Apple backup folder DIR/<UDID>/ in place (Finder, iTunes and\n" +
			"idevicebackup2 read it), incremental when DIR already holds the device's previous backup.\n" +
			"On iOS 16.1 and later, enter the passcode on the device when it asks. A backup made here\n" +
			"counts as the device's backup of the day for the schedule.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runBackup(ctx, f, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVar(&f.udid, "udid", "", "device to back up (default: the only connected device)")
	cmd.Flags().BoolVar(&f.full, "full", false, "force a full backup")
	cmd.Flags().StringVar(&f.dir, "dir", "", "write a plain backup folder into `DIR` (DIR/<UDID>/)")
	cmd.Flags().BoolVar(&f.asJSON, "json", false, "print progress and the result as JSON lines")
	return cmd
}

// backupTarget is where a run writes and what happens after it. With --dir the folder is
// written in place; the snapshot store will provide a staging root and a commit here.
type backupTarget struct {
	root   string
	finish func(ctx context.Context, res engine.Result, runErr error) error
}

func resolveTarget(ctx context.Context, f *backupFlags) (backupTarget, error) {
	if f.dir == "" {
		return storeTarget(ctx, f)
	}
	abs, err := filepath.Abs(f.dir)
	if err != nil {
		return backupTarget{}, err
	}
	return backupTarget{root: abs, finish: func(_ context.Context, _ engine.Result, err error) error { return err }}, nil
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

func runBackup(ctx context.Context, f backupFlags, stdout, stderr io.Writer) error {
	devs, err := deviceHost(nil)
	if err != nil {
		return err
	}
	defer devs.Close()
	f.devs = devs
	target, err := resolveTarget(ctx, &f)
	if err != nil {
		return err
	}
	var view progressView
	switch {
	case f.asJSON:
		view = &jsonView{enc: json.NewEncoder(stdout)}
	case isTerminal(stderr):
		view = &barView{w: stderr}
	default:
		view = &lineView{w: stderr}
	}
	events, done := render(view)
	res, runErr := engine.Backup(ctx, engine.Request{
		Devices: devs,
		UDID:    f.udid,
		Root:    target.root,
		Full:    f.full,
		Events:  events,
	})
	done()
	err = target.finish(ctx, res, runErr)
	view.result(res, err)
	if err == nil {
		printUnreadable(stderr, res)
	}
	return err
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

type progressView interface {
	event(mobilebackup2.Event)
	result(engine.Result, error)
}

// --- terminal: progress bar (phase, percent, MB/s, ETA) ---

type barView struct {
	w     io.Writer
	bar   *progressbar.ProgressBar
	max   int64
	start time.Time // first event with bytes: the base of the MB/s figure
	base  int64
}

func (v *barView) ensure(max int64) {
	if v.bar != nil && max == v.max {
		return
	}
	if v.bar != nil {
		v.bar.ChangeMax64(max)
		v.max = max
		return
	}
	v.max = max
	v.bar = progressbar.NewOptions64(max,
		progressbar.OptionSetWriter(v.w),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(150*time.Millisecond),
		progressbar.OptionShowElapsedTimeOnFinish(),
		progressbar.OptionSetRenderBlankState(true),
		progressbar.OptionClearOnFinish(),
	)
}

func (v *barView) event(ev mobilebackup2.Event) {
	switch ev.Kind {
	case mobilebackup2.EventPasscodeRequested:
		v.clear()
		fmt.Fprintln(v.w, "Enter the passcode on the device to start the backup.")
	case mobilebackup2.EventFinished, mobilebackup2.EventFailed:
		v.clear()
		return
	}
	// The device's announced total covers the data files; Manifest.db and the plists come on
	// top, so the total grows when the count passes it rather than the bar overflowing.
	max := int64(-1)
	if ev.BytesExpected > 0 {
		max = ev.BytesExpected
		if ev.BytesDone > max {
			max = ev.BytesDone
		}
	}
	v.ensure(max)
	pct := ""
	if ev.Percent > 0 {
		pct = fmt.Sprintf(" %3.0f%%", ev.Percent)
	}
	rate := ""
	if ev.BytesDone > 0 && v.start.IsZero() {
		v.start, v.base = ev.Time, ev.BytesDone
	} else if d := ev.Time.Sub(v.start).Seconds(); !v.start.IsZero() && d > 0.5 {
		rate = fmt.Sprintf("  %.1f MB/s", float64(ev.BytesDone-v.base)/1e6/d)
	}
	v.bar.Describe(fmt.Sprintf("%-20s%s  %d files%s", ev.Phase, pct, ev.FilesDone, rate))
	v.bar.Set64(ev.BytesDone)
}

func (v *barView) clear() {
	if v.bar != nil {
		v.bar.Clear()
		v.bar = nil
	}
}

func (v *barView) result(res engine.Result, err error) {
	v.clear()
	printResult(v.w, res, err)
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

func (v *lineView) result(res engine.Result, err error) { printResult(v.w, res, err) }

func printResult(w io.Writer, res engine.Result, err error) {
	if err != nil {
		fmt.Fprintf(w, "Backup failed: %v\n", err)
		return
	}
	kind := "incremental"
	if res.Backup.FullBackup {
		kind = "full"
	}
	secs := res.Finished.Sub(res.Started).Seconds()
	rate := ""
	if secs > 0 {
		rate = fmt.Sprintf(", %.1f MB/s", float64(res.Backup.BytesReceived)/1e6/secs)
	}
	fmt.Fprintf(w, "Backed up %s (%s, %s) to %s: %s backup, %d files, %s in %.1fs%s\n",
		res.Device.Name, res.Device.ProductType, res.UDID, res.Dir, kind,
		res.Backup.FilesReceived, mb(res.Backup.BytesReceived), secs, rate)
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

func (v *jsonView) result(res engine.Result, err error) {
	_ = v.enc.Encode(struct {
		Kind    string     `json:"kind"`
		OK      bool       `json:"ok"`
		UDID    string     `json:"udid,omitempty"`
		Dir     string     `json:"dir,omitempty"`
		Full    bool       `json:"full"`
		Files   int64      `json:"files"`
		Bytes   int64      `json:"bytes"`
		Seconds float64    `json:"seconds"`
		Device  any        `json:"device,omitempty"`
		Error   *jsonError `json:"error,omitempty"`
	}{Kind: "result", OK: err == nil, UDID: res.UDID, Dir: res.Dir, Full: res.Backup.FullBackup,
		Files: res.Backup.FilesReceived, Bytes: res.Backup.BytesReceived,
		Seconds: res.Finished.Sub(res.Started).Seconds(), Device: res.Device, Error: toJSONError(err)})
}

// storeTarget runs the backup through the device's snapshot store: the engine writes into a
// staging clone of the latest backup, which is verified and committed only on success.
func storeTarget(ctx context.Context, f *backupFlags) (backupTarget, error) {
	if f.udid == "" {
		devs, err := f.devs.List(ctx)
		if err != nil {
			return backupTarget{}, err
		}
		switch len(devs) {
		case 0:
			return backupTarget{}, failure.Newf(failure.NotConnected, "no device connected")
		case 1:
			f.udid = devs[0].UDID
		default:
			return backupTarget{}, fmt.Errorf("%d devices are connected; choose one with --udid (see snapback devices)", len(devs))
		}
	}
	cfgPath, err := settings.ConfigPath()
	if err != nil {
		return backupTarget{}, err
	}
	cfg, err := settings.Open(cfgPath)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return backupTarget{}, fmt.Errorf("settings %s: %w (fix the file; snapback config check names each problem)", cfgPath, err)
	}
	eff := cfg.Current().Effective(f.udid)
	stores := &app.Stores{Now: time.Now}
	st, err := stores.Open(ctx, eff.Location)
	if err != nil {
		return backupTarget{}, err
	}
	run, err := st.Begin(ctx, f.udid, store.BeginOptions{Full: f.full})
	if err != nil {
		return backupTarget{}, err
	}
	finish := func(ctx context.Context, res engine.Result, runErr error) error {
		if runErr != nil {
			if err := run.Abort(); err != nil {
				return errors.Join(runErr, fmt.Errorf("discard staging: %w", err))
			}
			return runErr
		}
		kind := store.KindIncremental
		if res.Backup.FullBackup {
			kind = store.KindFull
		}
		snap, err := run.Commit(ctx, store.CommitMeta{Kind: kind, Exceptions: app.Exceptions(res)})
		if err != nil {
			run.Abort()
			return err
		}
		fmt.Fprintf(os.Stderr, "Committed snapshot %s in %s\n", snap.ID, st.LatestDir(f.udid))
		if s := eff.Snapshots; s.Enabled && s.AutoDelete {
			approval, err := app.ApplyRetention(ctx, st, f.udid, s)
			switch {
			case err != nil:
				fmt.Fprintf(os.Stderr, "Retention did not run: %v\n", err)
			case approval != nil:
				fmt.Fprintf(os.Stderr, "Retention wants to %s (%s); run snapback prune --udid %s --yes to allow it\n",
					approval.Summary, humanBytes(approval.Bytes), f.udid)
			}
		}
		return nil
	}
	return backupTarget{root: run.Root(), finish: finish}, nil
}
