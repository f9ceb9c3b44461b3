//go:build linux

package engine

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"snapback/internal/devicesim"
	"snapback/internal/devicesim/backupsim"
)

// Benchmarks print tables (b.Logf); run them with `make bench` or
//
//	go test -run '^$' -bench . -benchtime 1x ./internal/engine/
//
// The dataset is sized by environment variables so `make bench` stays quick:
//
//	SNAPBACK_BENCH_FILES   files of the mixed dataset        (default 2000)
//	SNAPBACK_BENCH_SIZE    its total size, e.g. 200MB, 2GB   (default 200MB)
//	SNAPBACK_BENCH_MANY    files of the many-files device    (default 20000 of ~2 KB)
//	SNAPBACK_BENCH_INCR    files of the incremental set      (default 20000 of ~2 KB)
//	SNAPBACK_BENCH_RUNS    runs per contender, alternating   (default 3)
//	SNAPBACK_BENCH_HUGE    files of the store/--dir set      (default: skipped; 1000000)
//	SNAPBACK_BENCH_FS      BenchmarkHost's loop image: ext4 (default), btrfs or xfs
//
// The reference comparison of issue #16 is in BenchmarkHost's comment.
//
// BenchmarkHost (hostbench_test.go) runs every client and the simulator as separate
// processes, so wall time, user+sys CPU and peak RSS come from each process's own rusage.

func envInt(name string, def int64) int64 {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	mult := int64(1)
	u := strings.ToUpper(s)
	for _, suf := range []struct {
		s string
		m int64
	}{{"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}} {
		if strings.HasSuffix(u, suf.s) {
			u, mult = strings.TrimSuffix(u, suf.s), suf.m
			break
		}
	}
	n, err := strconv.ParseFloat(u, 64)
	if err != nil {
		panic(fmt.Sprintf("%s=%q: %v", name, s, err))
	}
	return int64(n * float64(mult))
}

var (
	buildOnce sync.Once
	snapBin   string
	buildErr  error
)

// snapbackBinary builds the CLI once per benchmark process.
func snapbackBinary(b *testing.B) string {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "snapback-bench-")
		if err != nil {
			buildErr = err
			return
		}
		snapBin = filepath.Join(dir, "snapback")
		out, err := exec.Command("go", "build", "-o", snapBin, "snapback").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		b.Fatal(buildErr)
	}
	return snapBin
}

type run struct {
	wall time.Duration
	// durable is wall plus the sync(2) right after the run (BenchmarkHost): the time until
	// the backup is on disk. Snapback ends a backup with syncfs, idevicebackup2 with
	// nothing, so wall alone charges only Snapback for writing back what it received.
	durable time.Duration
	// result is the time until the client reported the backup done ("Snapshot … committed",
	// "Backup folder: …", idevicebackup2's "Backup Successful."): the store's upkeep (the
	// day's scrub, preparing the next backup's folder) follows, which wall includes. 0: no
	// report.
	result time.Duration
	// resultCPU is the client's user+system CPU when it reported the result (from
	// /proc/PID/stat, 10 ms resolution): the store's upkeep after it (scrub, preparing the
	// next backup) runs at idle priority and is in user and sys only. 0: no report.
	// resultUser is its user-space share.
	resultCPU, resultUser time.Duration
	user, sys             time.Duration
	rssMB                 float64
	simCPU                time.Duration // the simulator's CPU during the run, when it is its own process
	simRSSMB              float64       // the simulator's peak RSS during the run
}

func (r run) String() string {
	return fmt.Sprintf("%8.2fs %8.2fs %8.2fs %9.1f", r.wall.Seconds(), r.user.Seconds(), r.sys.Seconds(), r.rssMB)
}

// resultWatch collects a child's output and notes when it first reports a finished backup.
// exec's copying goroutines call Write one at a time per stream; the mutex covers both.
type resultWatch struct {
	mu    sync.Mutex
	out   *bytes.Buffer
	t0    time.Time
	pid   int // set once the child started; 0 before (no CPU reading then)
	at    time.Duration
	cpuAt time.Duration // the child's CPU at that moment
	usrAt time.Duration // its user-space share
}

func (w *resultWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, _ := w.out.Write(p)
	if w.at == 0 {
		for _, m := range []string{"committed: ", "Backup folder: ", "Backup Successful"} {
			if bytes.Contains(w.out.Bytes()[max(0, w.out.Len()-len(p)-64):], []byte(m)) {
				w.at = time.Since(w.t0)
				if w.pid != 0 {
					if u, s, err := procCPU(w.pid); err == nil {
						w.cpuAt, w.usrAt = u+s, u
					}
				}
				break
			}
		}
	}
	return n, nil
}

// childEnv runs a command with env added to this process's environment and returns its
// resource use.
func childEnv(b *testing.B, env []string, name string, args ...string) run {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Hour)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	t0 := time.Now()
	w := &resultWatch{out: &out, t0: t0}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	w.mu.Lock()
	w.pid = cmd.Process.Pid
	w.mu.Unlock()
	// Peak RSS: wait4's ru_maxrss is exact for the child, except that it also counts the
	// parent's resident set at exec time (Go execs from a vfork-style clone; the kernel keeps
	// the old mm's high-water mark in exec_mmap). So the child's own VmHWM is sampled too, and
	// ru_maxrss is used only when it exceeds this process's own peak, i.e. when it is the
	// child's.
	parentKB := vmField("/proc/self/status", "VmHWM:")
	var hwm atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		path := fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)
		for {
			if kb := vmHWM(path); kb > hwm.Load() {
				hwm.Store(kb)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	err := cmd.Wait()
	wall := time.Since(t0)
	close(stop)
	<-sampled
	if err != nil {
		b.Fatalf("%s %v: %v\n%s", filepath.Base(name), args, err, lastLines(out.String(), 20))
	}
	r := run{wall: wall, result: w.at, resultCPU: w.cpuAt, resultUser: w.usrAt, rssMB: float64(hwm.Load()) / 1024}
	if ru, _ := cmd.ProcessState.SysUsage().(*syscall.Rusage); ru != nil {
		r.user = time.Duration(ru.Utime.Nano())
		r.sys = time.Duration(ru.Stime.Nano())
		if maxrss := int64(ru.Maxrss); maxrss > parentKB+parentKB/20 {
			r.rssMB = max(r.rssMB, float64(maxrss)/1024)
		}
	}
	return r
}

// procCPU is a running process's user and system CPU so far, from /proc/PID/stat (fields
// 14 and 15, in USER_HZ ticks, which is 100 on Linux).
func procCPU(pid int) (user, sys time.Duration, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The command name (field 2) may hold spaces; the fields after its closing ")" are fixed.
	rest := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	if len(rest) < 13 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(rest)+2)
	}
	ut, _ := strconv.ParseInt(rest[11], 10, 64)
	st, _ := strconv.ParseInt(rest[12], 10, 64)
	const hz = 100
	return time.Duration(ut) * time.Second / hz, time.Duration(st) * time.Second / hz, nil
}

// vmHWM reads a process's peak resident set in KiB (0 once it has exited).
func vmHWM(statusPath string) int64 { return vmField(statusPath, "VmHWM:") }

// vmField reads one "Vm…: N kB" line of /proc/PID/status (0 if absent).
func vmField(statusPath, field string) int64 {
	data, err := os.ReadFile(statusPath)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb
		}
	}
	return 0
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

func benchRig(b *testing.B, o backupsim.Options) *rig {
	b.Helper()
	no := false
	o.PasscodeRequired = &no
	if o.TempDir == "" {
		o.TempDir = b.TempDir()
	}
	return newRig(b, o, devicesim.DeviceConfig{})
}

// BenchmarkIncrementalVsFull: the time of an incremental backup with 1 % changed against a
// full backup of the same device, in process (engine.Backup).
func BenchmarkIncrementalVsFull(b *testing.B) {
	files := envInt("SNAPBACK_BENCH_FILES", 2000)
	size := envInt("SNAPBACK_BENCH_SIZE", 200e6)
	for i := 0; i < b.N; i++ {
		r := benchRig(b, backupsim.Options{Seed: 9, Files: int(files), TotalSize: size})
		root := b.TempDir()
		t0 := time.Now()
		if _, err := r.backup(b, root, true, nil); err != nil {
			b.Fatal(err)
		}
		full := time.Since(t0)
		r.agent.Mutate(1)
		t0 = time.Now()
		if _, err := r.backup(b, root, false, nil); err != nil {
			b.Fatal(err)
		}
		inc := time.Since(t0)
		c := r.agent.Counters()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		b.Logf("\n%d files, %.0f MB\n%-28s %8.2fs\n%-28s %8.2fs (%d files, %.1f MB uploaded; %.1f%% of full time)",
			files, float64(size)/1e6, "full", full.Seconds(), "incremental (1% changed)", inc.Seconds(),
			c.LastFilesUploaded, float64(c.LastBytesUploaded)/1e6, 100*inc.Seconds()/full.Seconds())
	}
}
