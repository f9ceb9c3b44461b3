package cli

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"snapback/internal/testenv"
)

// Idle cost of the daemon and the tray with two simulated devices attached and nothing due:
// CPU seconds over a window (default 60 s, SNAPBACK_IDLE_SECONDS) and resident memory, read
// from /proc for the real binary. Targets: daemon < 0.05 s and < 30 MB; tray < 0.05 s and
// < 40 MB. Run with `make bench`.

func BenchmarkIdleDaemon(b *testing.B) { benchIdle(b, "daemon", 30) }

func BenchmarkIdleTray(b *testing.B) {
	if _, err := exec.LookPath("dbus-run-session"); err != nil {
		b.Skip("dbus-run-session not installed")
	}
	benchIdle(b, "tray", 40)
}

func benchIdle(b *testing.B, mode string, targetMB float64) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		b.Skip("needs /proc")
	}
	window := 60 * time.Second
	if s := os.Getenv("SNAPBACK_IDLE_SECONDS"); s != "" {
		n, _ := strconv.Atoi(s)
		window = time.Duration(n) * time.Second
	}
	dir := b.TempDir()
	bin := filepath.Join(dir, "snapback")
	if out, err := exec.Command("go", "build", "-o", bin, "snapback").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	port := freePort(b)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	sim := exec.Command(bin, "simulate", "--listen", addr, "--devices", "2", "--files", "50", "--size", "1MB")
	sim.Env = os.Environ()
	if err := sim.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { sim.Process.Kill(); sim.Wait() }()
	waitListening(b, addr)

	env := append(os.Environ(),
		"USBMUXD_SOCKET_ADDRESS="+addr,
		"XDG_CONFIG_HOME="+filepath.Join(dir, "config"), "XDG_STATE_HOME="+filepath.Join(dir, "state"),
		"XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_RUNTIME_DIR="+filepath.Join(dir, "run"), "SNAPBACK_CONFIG=")
	cfg := filepath.Join(dir, "config", "snapback", "config.yaml")
	os.MkdirAll(filepath.Dir(cfg), 0o700)
	// Nothing is due: automatic backups are off, so the engine only watches.
	os.WriteFile(cfg, []byte("schedule:\n  enabled: false\n"), 0o600)

	pidFile := filepath.Join(dir, "pid")
	var app *exec.Cmd
	if mode == "tray" {
		app = exec.Command("dbus-run-session", "--", "sh", "-c", `"$0" tray & echo $! > "$1"; wait`, bin, pidFile)
	} else {
		app = exec.Command("sh", "-c", `"$0" daemon & echo $! > "$1"; wait`, bin, pidFile)
	}
	app.Env = env
	daemonLog, err := os.Create(filepath.Join(dir, "daemon.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer daemonLog.Close()
	app.Stderr = daemonLog
	if err := app.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { app.Process.Kill(); app.Wait() }()
	pid := readPid(b, pidFile)
	defer exec.Command("kill", strconv.Itoa(pid)).Run()

	// Start-up: settings read, devices listed and described. The daemon logs to stderr, the
	// tray to its log file; either way both devices must be attached, or this measures an app
	// with nothing to watch.
	var logs, trayLog []byte
	attached := func() bool {
		logs, _ = os.ReadFile(filepath.Join(dir, "daemon.log"))
		trayLog, _ = os.ReadFile(filepath.Join(dir, "state", "snapback", "snapback.log"))
		return strings.Count(string(logs)+string(trayLog), "event=DeviceAttached") >= 2
	}
	if !testenv.Eventually(20*time.Second, attached) {
		b.Fatalf("the %s did not see both devices attached; logs:\n%s%s", mode, logs, trayLog)
	}
	// Not a synchronisation but part of the measurement: a quiet second after start-up's
	// last work (describing the devices), so that the window below measures idling only.
	time.Sleep(time.Second)
	cpu0 := cpuSeconds(b, pid)
	b.ResetTimer()
	time.Sleep(window)
	b.StopTimer()
	cpu := cpuSeconds(b, pid) - cpu0
	rss, hwm := memMB(b, pid, "VmRSS"), memMB(b, pid, "VmHWM")
	b.ReportMetric(cpu, "cpu-s")
	b.ReportMetric(rss, "rss-MB")
	b.Logf("\n| idle %-6s (2 devices, %v) | CPU s | RSS MB | peak RSS MB | target |\n|---|---|---|---|---|\n| measured | %.3f | %.1f | %.1f | < 0.05 s, < %.0f MB |",
		mode, window, cpu, rss, hwm, targetMB)
}

func freePort(b *testing.B) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitListening(b *testing.B, addr string) {
	testenv.WaitFor(b, 20*time.Second, "the simulator to listen on "+addr, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

func readPid(b *testing.B, path string) int {
	var pid int
	testenv.WaitFor(b, 10*time.Second, "the app to start", func() bool {
		data, err := os.ReadFile(path)
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(data)))
		return err == nil
	})
	return pid
}

// cpuSeconds is utime+stime of pid (USER_HZ is 100 on Linux).
func cpuSeconds(b *testing.B, pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatalf("the app exited: %v", err)
	}
	// Fields after the command name, which is in parentheses and may contain spaces.
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100
}

func memMB(b *testing.B, pid int, key string) float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+":"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}
