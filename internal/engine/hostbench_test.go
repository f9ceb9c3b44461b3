//go:build linux

package engine

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"snapback/internal/testenv"
)

// BenchmarkHost compares the host side of a backup, measured the way issue #16 asks:
//
//   - the simulated iPhone runs in its own process (`snapback simulate`), and its CPU during
//     each run is reported separately, so the client's figures are the client's alone;
//   - the contenders alternate (A B C C B A, repeated), so no tool always runs first after a
//     large deletion; each contender runs SNAPBACK_BENCH_ROUNDS×2 times (default 2 rounds,
//     4 runs) and the table prints min and median;
//   - the backups are written to a journaled ext4 loop image when this process may mount one
//     (root): the root filesystem of the CI machines has no journal, which distorts file
//     creation costs. The table says which filesystem was used and why.
//
// Contenders: D `snapback backup --dir` (a plain folder), S `snapback backup` through the
// snapshot store (its location on the image), and I Debian's idevicebackup2. Each run is a full
// backup followed by an incremental after the simulator changed 1% of the files.
//
//	SNAPBACK_BENCH_FILES=20000 SNAPBACK_BENCH_SIZE=2GB go test -run '^$' -bench Host -benchtime 1x ./internal/engine/
//
// Two datasets: a mixed one (SNAPBACK_BENCH_FILES files, SNAPBACK_BENCH_SIZE bytes) and a
// device of many ~2 KB files (SNAPBACK_BENCH_MANY), where per-file costs dominate.
func BenchmarkHost(b *testing.B) {
	b.Run("mixed", func(b *testing.B) {
		hostBench(b, envInt("SNAPBACK_BENCH_FILES", 2000), envInt("SNAPBACK_BENCH_SIZE", 200e6))
	})
	b.Run("many-small", func(b *testing.B) {
		many := envInt("SNAPBACK_BENCH_MANY", 20000)
		hostBench(b, many, many*2048)
	})
}

func hostBench(b *testing.B, files, size int64) {
	rounds := int(envInt("SNAPBACK_BENCH_ROUNDS", 2))
	bin := snapbackBinary(b)
	ideviceb := testenv.RequireTool(b, "idevicebackup2")
	for i := 0; i < b.N; i++ {
		fsDir, fsNote := benchFilesystem(b, files, size)
		sim := startSimProcess(b, bin, files, size)
		home := b.TempDir() // settings and state of the store contender, off the image
		env := []string{
			"USBMUXD_SOCKET_ADDRESS=" + sim.addr,
			"XDG_CONFIG_HOME=" + filepath.Join(home, "config"),
			"XDG_STATE_HOME=" + filepath.Join(home, "state"),
			"XDG_DATA_HOME=" + filepath.Join(home, "data"),
		}
		type contender struct {
			name, tag  string
			full, incr func(dir string) []string
			setup      func(dir string) []string // extra environment
		}
		cs := []contender{
			{name: "snapback --dir", tag: "D",
				full: func(dir string) []string { return []string{bin, "backup", "--udid", sim.udid, "--full", "--dir", dir} },
				incr: func(dir string) []string { return []string{bin, "backup", "--udid", sim.udid, "--dir", dir} }},
			{name: "snapback store", tag: "S",
				full:  func(string) []string { return []string{bin, "backup", "--udid", sim.udid, "--full"} },
				incr:  func(string) []string { return []string{bin, "backup", "--udid", sim.udid} },
				setup: func(dir string) []string { return []string{"SNAPBACK_LOCATION=" + dir} }},
			{name: "idevicebackup2", tag: "I",
				full: func(dir string) []string { return []string{ideviceb, "-u", sim.udid, "backup", "--full", dir} },
				incr: func(dir string) []string { return []string{ideviceb, "-u", sim.udid, "backup", dir} }},
		}
		fulls := make([][]run, len(cs))
		incrs := make([][]run, len(cs))
		order := make([]int, 0, 2*len(cs))
		for j := range cs {
			order = append(order, j)
		}
		for j := len(cs) - 1; j >= 0; j-- {
			order = append(order, j)
		}
		for r := 0; r < rounds; r++ {
			for _, j := range order {
				c := cs[j]
				dir := filepath.Join(fsDir, fmt.Sprintf("run-%d-%d", r, j))
				if err := os.Mkdir(dir, 0o755); err != nil {
					b.Fatal(err)
				}
				e := env
				if c.setup != nil {
					e = append(slices.Clone(env), c.setup(dir)...)
				}
				// A device backs up incrementally only against the backup it made last, so
				// each contender's incremental directly follows its own full backup; the
				// simulator changes 1% of its files after every backup (--mutate 1).
				fulls[j] = append(fulls[j], sim.measure(b, e, c.full(dir)))
				incrs[j] = append(incrs[j], sim.measure(b, e, c.incr(dir)))
				if err := os.RemoveAll(dir); err != nil {
					b.Fatal(err)
				}
				syscall.Sync() // the next contender must not pay for this one's writeback
			}
		}
		var sb strings.Builder
		fmt.Fprintf(&sb, "\nhost benchmark: %d files, %.0f MB; %s; simulator in its own process; order %s repeated %d×; %d runs each\n",
			files, float64(size)/1e6, fsNote, orderString(cs, order, func(c contender) string { return c.tag }), rounds, 2*rounds)
		fmt.Fprintf(&sb, "%-34s %-6s %8s %8s %8s %8s %9s %9s %9s\n", "run", "", "wall s", "user s", "sys s", "RSS MB", "user s/GB", "sys s/GB", "sim CPU s")
		row := func(name string, runs []run, gb float64) {
			for _, stat := range []string{"min", "median"} {
				r := summarise(runs, stat)
				perGB := func(d time.Duration) string {
					if gb <= 0 {
						return "-"
					}
					return fmt.Sprintf("%.2f", d.Seconds()/gb)
				}
				fmt.Fprintf(&sb, "%-34s %-6s %8.2f %8.2f %8.2f %8.1f %9s %9s %9.2f\n", name, stat, r.wall.Seconds(), r.user.Seconds(),
					r.sys.Seconds(), r.rssMB, perGB(r.user), perGB(r.sys), r.simCPU.Seconds())
			}
		}
		gb := float64(size) / 1e9
		for j, c := range cs {
			row(c.name+" full", fulls[j], gb)
		}
		for j, c := range cs {
			row(c.name+" incremental (1%)", incrs[j], 0)
		}
		med := func(runs []run) run { return summarise(runs, "median") }
		cpu := func(r run) float64 { return (r.user + r.sys).Seconds() }
		d, s, id := med(fulls[0]), med(fulls[1]), med(fulls[2])
		fmt.Fprintf(&sb, "full, medians: --dir/idevicebackup2 wall %.2f CPU %.2f; store/idevicebackup2 wall %.2f CPU %.2f (target <= 0.8)\n",
			d.wall.Seconds()/id.wall.Seconds(), cpu(d)/cpu(id), s.wall.Seconds()/id.wall.Seconds(), cpu(s)/cpu(id))
		di, si := med(incrs[0]), med(incrs[1])
		fmt.Fprintf(&sb, "incremental, medians: store/--dir wall %.2f (target <= 1.2)\n", si.wall.Seconds()/di.wall.Seconds())
		// Printed, not b.Log: the testing package cuts benchmark logs after a few lines.
		fmt.Print(sb.String())
	}
}

func orderString[T any](cs []T, order []int, short func(T) string) string {
	parts := make([]string, len(order))
	for i, j := range order {
		parts[i] = short(cs[j])
	}
	return strings.Join(parts, " ")
}

// summarise returns the per-field minimum or median of runs (each field on its own, so a
// "min" row is a lower bound rather than one particular run).
func summarise(runs []run, stat string) run {
	pick := func(get func(run) float64) float64 {
		v := make([]float64, len(runs))
		for i, r := range runs {
			v[i] = get(r)
		}
		slices.Sort(v)
		if stat == "min" {
			return v[0]
		}
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	d := func(get func(run) time.Duration) time.Duration {
		return time.Duration(pick(func(r run) float64 { return float64(get(r)) }))
	}
	return run{
		wall:   d(func(r run) time.Duration { return r.wall }),
		user:   d(func(r run) time.Duration { return r.user }),
		sys:    d(func(r run) time.Duration { return r.sys }),
		simCPU: d(func(r run) time.Duration { return r.simCPU }),
		rssMB:  pick(func(r run) float64 { return r.rssMB }),
	}
}

// benchFilesystem returns a folder on a fresh journaled ext4 loop image big enough for two
// copies of the dataset plus metadata, or a temporary folder with the reason it is not one.
func benchFilesystem(b *testing.B, files, size int64) (dir, note string) {
	b.Helper()
	tmp := b.TempDir()
	if os.Geteuid() != 0 {
		return tmp, "NOT a loop image (needs root): the temporary folder's filesystem"
	}
	for _, tool := range []string{"mkfs.ext4", "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			return tmp, "NOT a loop image (" + tool + " missing): the temporary folder's filesystem"
		}
	}
	img := filepath.Join(tmp, "bench.img")
	mnt := filepath.Join(tmp, "mnt")
	// Two backups of the data (full + the store's staging or the previous tool's leftovers
	// before deletion), inodes and journal: 3× the data plus 8 KiB a file, at least 1 GiB.
	bytes := max(3*size+files*8192, 1<<30)
	if err := os.Mkdir(mnt, 0o755); err != nil {
		b.Fatal(err)
	}
	f, err := os.Create(img)
	if err != nil {
		b.Fatal(err)
	}
	if err := f.Truncate(bytes); err != nil {
		b.Fatal(err)
	}
	f.Close()
	inodes := strconv.FormatInt(max(4*files, 65536), 10)
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-O", "has_journal", "-N", inodes, img).CombinedOutput(); err != nil {
		return tmp, fmt.Sprintf("NOT a loop image (mkfs.ext4: %v: %s)", err, strings.TrimSpace(string(out)))
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		return tmp, fmt.Sprintf("NOT a loop image (mount: %v: %s)", err, strings.TrimSpace(string(out)))
	}
	b.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			b.Logf("umount %s: %v: %s", mnt, err, out)
		}
	})
	return mnt, fmt.Sprintf("journaled ext4 loop image (%.1f GB)", float64(bytes)/1e9)
}

// simProcess is `snapback simulate` running as its own process.
type simProcess struct {
	cmd  *exec.Cmd
	addr string
	udid string
	pid  int
}

func startSimProcess(b *testing.B, bin string, files, size int64) *simProcess {
	b.Helper()
	// iOS 15 asks for no passcode, so no simulated typing delay enters the figures.
	cmd := exec.Command(bin, "simulate", "--listen", "127.0.0.1:0", "--files", strconv.FormatInt(files, 10),
		"--size", strconv.FormatInt(size, 10), "--seed", "3", "--ios", "15.8", "--mutate", "1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	s := &simProcess{cmd: cmd, pid: cmd.Process.Pid}
	sc := bufio.NewScanner(stdout)
	for (s.addr == "" || s.udid == "") && sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "USBMUXD_SOCKET_ADDRESS="); ok {
			s.addr = v
		}
		if v, ok := strings.CutPrefix(line, "# device 1: "); ok {
			s.udid = strings.Fields(v)[0]
		}
	}
	if s.addr == "" || s.udid == "" {
		b.Fatalf("simulate printed no address or device: %v", sc.Err())
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }() // owned by cmd: ends when it exits
	return s
}

// cpu is the simulator's user+system CPU so far, from /proc/PID/stat (fields 14 and 15).
func (s *simProcess) cpu(b *testing.B) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.pid))
	if err != nil {
		b.Fatal(err)
	}
	// The command name (field 2) may hold spaces; the fields after its closing ")" are fixed.
	rest := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	ut, _ := strconv.ParseInt(rest[11], 10, 64)
	st, _ := strconv.ParseInt(rest[12], 10, 64)
	const hz = 100 // USER_HZ is 100 on Linux
	return time.Duration(ut+st) * time.Second / hz
}

// measure runs one client against the simulator and adds the simulator's CPU during it.
func (s *simProcess) measure(b *testing.B, env, argv []string) run {
	b.Helper()
	before := s.cpu(b)
	r := childEnv(b, env, argv[0], argv[1:]...)
	r.simCPU = s.cpu(b) - before
	return r
}
