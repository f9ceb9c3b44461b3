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
	"snapback/internal/testenv"
)

// Benchmarks print tables (b.Logf); run them with `make bench` or
//
//	go test -run '^$' -bench . -benchtime 1x ./internal/engine/
//
// The dataset is sized by environment variables so `make bench` stays quick:
//
//	SNAPBACK_BENCH_FILES   files of the mixed dataset        (default 2000)
//	SNAPBACK_BENCH_SIZE    its total size, e.g. 200MB, 2GB   (default 200MB)
//	SNAPBACK_BENCH_MANY    files of the many-files device    (default 50000)
//
// The reference comparison from DESIGN.md §9 (2 GB, 20,000 files; 1,000,000 files):
//
//	SNAPBACK_BENCH_FILES=20000 SNAPBACK_BENCH_SIZE=2GB SNAPBACK_BENCH_MANY=1000000 \
//	  go test -run '^$' -bench . -benchtime 1x -timeout 2h ./internal/engine/
//
// Snapback and idevicebackup2 both run as child processes against the same simulated
// device served by this process, so wall time, user+sys CPU and peak RSS come from the
// children's rusage and compare like with like.

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
	wall      time.Duration
	user, sys time.Duration
	rssMB     float64
}

func (r run) String() string {
	return fmt.Sprintf("%8.2fs %8.2fs %8.2fs %9.1f", r.wall.Seconds(), r.user.Seconds(), r.sys.Seconds(), r.rssMB)
}

// child runs a command against the simulator and returns its resource use.
func child(b *testing.B, addr string, name string, args ...string) run {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Hour)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "USBMUXD_SOCKET_ADDRESS="+addr)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	// Peak RSS is sampled from the child's own VmHWM: wait4's ru_maxrss also counts the
	// parent's resident set at exec time (Go execs from a vfork-style clone), so it would
	// report this benchmark process (which hosts the simulator), not the tool.
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
	r := run{wall: wall, rssMB: float64(hwm.Load()) / 1024}
	if ru, _ := cmd.ProcessState.SysUsage().(*syscall.Rusage); ru != nil {
		r.user = time.Duration(ru.Utime.Nano())
		r.sys = time.Duration(ru.Stime.Nano())
	}
	return r
}

// vmHWM reads a process's peak resident set in KiB (0 once it has exited).
func vmHWM(statusPath string) int64 {
	data, err := os.ReadFile(statusPath)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
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

// BenchmarkVsIdevicebackup2 backs the same mixed dataset up with both clients (full, then
// incremental after 1 % changed) and prints wall, CPU and peak RSS.
func BenchmarkVsIdevicebackup2(b *testing.B) {
	files := envInt("SNAPBACK_BENCH_FILES", 2000)
	size := envInt("SNAPBACK_BENCH_SIZE", 200e6)
	bin := snapbackBinary(b)
	ideviceb := testenv.RequireTool(b, "idevicebackup2")
	for i := 0; i < b.N; i++ {
		r := benchRig(b, backupsim.Options{Seed: 3, Files: int(files), TotalSize: size})
		// Each tool runs twice, in the order S I I S, and its faster run counts: ext4 makes
		// file creation slow for ~30 s after many inodes were freed (recently_deleted() in
		// the inode allocator), which would otherwise punish whichever tool runs first after
		// a cleanup (another benchmark's, or the previous run's).
		snap := func(args ...string) run {
			return child(b, r.sim.Addr(), bin, append([]string{"backup", "--udid", r.udid}, args...)...)
		}
		idev := func(args ...string) run {
			return child(b, r.sim.Addr(), ideviceb, append([]string{"-u", r.udid, "backup"}, args...)...)
		}
		// A device only backs up incrementally against the backup it made last (it remembers
		// that backup's UUID), so each tool's incremental directly follows its own full one.
		pair := func(run func(args ...string) run) (full, inc run) {
			dir := b.TempDir()
			full = run("--full", "--dir", dir)
			r.agent.Mutate(1)
			inc = run("--dir", dir)
			return full, inc
		}
		idevDir := func(args ...string) run { // idevicebackup2 takes the folder as an argument
			var out []string
			for i := 0; i < len(args); i++ {
				if args[i] == "--dir" {
					i++
					out = append(out, args[i])
					continue
				}
				out = append(out, args[i])
			}
			return idev(out...)
		}
		s1, s1i := pair(snap)
		i1, i1i := pair(idevDir)
		i2, i2i := pair(idevDir)
		s2, s2i := pair(snap)
		sFull, iFull := faster(s1, s2), faster(i1, i2)
		sInc, iInc := faster(s1i, s2i), faster(i1i, i2i)
		b.Logf("\nmixed dataset: %d files, %.0f MB (simulated device, loopback usbmuxd, TLS); best of 2 runs each, order S I I S, each incremental right after its own full\n"+
			"%-34s %9s %9s %9s %9s\n%-34s %s\n%-34s %s\n%-34s %s\n%-34s %s\n"+
			"ratio snapback/idevicebackup2 full: wall %.2f, CPU %.2f, RSS %.2f (target wall, CPU <= 0.8, RSS < 100 MB)",
			files, float64(size)/1e6, "run", "wall", "user", "sys", "RSS MB",
			"snapback full", sFull, "idevicebackup2 full", iFull,
			"snapback incremental (1% changed)", sInc, "idevicebackup2 incremental", iInc,
			sFull.wall.Seconds()/iFull.wall.Seconds(), (sFull.user+sFull.sys).Seconds()/(iFull.user+iFull.sys).Seconds(), sFull.rssMB/iFull.rssMB)
	}
}

// faster returns the run with the shorter wall time.
func faster(a, b run) run {
	if b.wall < a.wall {
		return b
	}
	return a
}

// BenchmarkManyFiles backs up a device with very many small files and reports Snapback's
// peak RSS: memory must not grow with the file count.
func BenchmarkManyFiles(b *testing.B) {
	files := envInt("SNAPBACK_BENCH_MANY", 50000)
	bin := snapbackBinary(b)
	for i := 0; i < b.N; i++ {
		r := benchRig(b, backupsim.Options{Seed: 5, Files: int(files), TotalSize: files * 2048})
		full := child(b, r.sim.Addr(), bin, "backup", "--udid", r.udid, "--full", "--dir", b.TempDir())
		line := ""
		if ib, err := exec.LookPath("idevicebackup2"); err == nil {
			line = fmt.Sprintf("\n%-22s %s", "idevicebackup2 full", child(b, r.sim.Addr(), ib, "-u", r.udid, "backup", "--full", b.TempDir()))
		}
		b.Logf("\nmany-files device: %d files of ~2 KB\n%-22s %9s %9s %9s %9s\n%-22s %s%s",
			files, "run", "wall", "user", "sys", "RSS MB", "snapback full", full, line)
	}
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
