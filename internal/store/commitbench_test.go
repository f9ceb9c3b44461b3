//go:build linux

package store

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"snapback/internal/backupfmt"
	"snapback/internal/testenv"
)

// BenchmarkCommitIncremental measures what the store adds to an incremental backup of a
// SNAPBACK_BENCH_FILES-file device (default 100,000; SNAPBACK_BENCH_KB KiB mean, default 2)
// at 1% churn, before issue #16 (Options.fullScan: sequential clone, verify, measure and
// index of every file) and after, alternating, SNAPBACK_BENCH_RUNS incremental runs each
// (default 3), on a journaled ext4 loop image when root can mount one. Every run is a child
// process (Begin, the engine's renames, Commit) so its peak RSS is the store's alone.
// SNAPBACK_BENCH_MODES=after skips the old way (a 1,000,000-file device). SNAPBACK_BENCH_FULL=1
// makes every run a forced full backup (Begin Full, the device sends every file) instead. Then it times the
// hard-link clone of the latest backup with 1-4 workers against cp -al. Run with
// -benchtime 1x.
func BenchmarkCommitIncremental(b *testing.B) {
	files := benchEnv("SNAPBACK_BENCH_FILES", 100000)
	kb := benchEnv("SNAPBACK_BENCH_KB", 2)
	runs := benchEnv("SNAPBACK_BENCH_RUNS", 3)
	modes := []string{"before", "after"}
	full := os.Getenv("SNAPBACK_BENCH_FULL") != ""
	if m := os.Getenv("SNAPBACK_BENCH_MODES"); m != "" {
		modes = strings.Split(m, ",")
	}
	benchMeanSize = kb << 10
	perStore := int64(files) * (int64(kb)<<10 + 4096) * 13 / 10
	if full {
		perStore *= 3 // latest, staging and the pending copy of every file
	}
	inodes := int64(len(modes) * files * 2)
	if full {
		inodes *= 2
	}
	root, note := testenv.JournaledExt4(b, int64(len(modes))*perStore+(1<<30), inodes)
	ctx := context.Background()
	for range b.N {
		dev := newBenchDevice(files)
		stores := map[string]*Store{}
		t0 := time.Now()
		for _, m := range modes {
			dir := filepath.Join(root, m+"-"+strconv.Itoa(int(time.Now().UnixNano()%1e6)))
			opts := testOptions(&fakeClock{t: epoch, step: time.Minute})
			opts.fullScan = m == "before"
			s := openStore(b, dir, opts)
			stores[m] = s
			pending := filepath.Join(dir, "pending")
			if err := dev.writePending(pending); err != nil {
				b.Fatal(err)
			}
			commitPending(b, s, dev.udid, pending)
		}
		clear(dev.dirty)
		clear(dev.removed)
		setup := time.Since(t0)

		results := map[string][]commitPhases{}
		for run := 0; run < runs; run++ {
			if full {
				// A forced full backup: the device sends everything again.
				for i := range dev.ver {
					dev.dirty[i] = true
				}
			} else {
				dev.churn(1)
			}
			order := slices.Clone(modes)
			if run%2 == 1 {
				slices.Reverse(order)
			}
			for _, m := range order {
				if err := dev.writePending(filepath.Join(stores[m].l.root, "pending")); err != nil {
					b.Fatal(err)
				}
			}
			clear(dev.dirty)
			clear(dev.removed)
			for _, m := range order {
				results[m] = append(results[m], commitChild(b, stores[m].l.root, m))
			}
		}

		what := "incremental commit: 1% churn"
		if full {
			what = "FULL commit (Begin Full, every file sent again)"
		}
		fmt.Printf("\nstore %s: %d files of %d KiB mean, %d runs per mode, %s (setup %s)\n",
			what, files, kb, runs, note, setup.Round(time.Second))
		fmt.Printf("%-28s", "median (min) ms")
		for _, m := range modes {
			fmt.Printf(" %24s", m)
		}
		fmt.Println()
		rows := []struct {
			name string
			get  func(commitPhases) float64
		}{
			{"Begin (clone)", func(p commitPhases) float64 { return p.Clone }},
			{"engine renames (not store)", func(p commitPhases) float64 { return p.Write }},
			{"diff (after: listings)", func(p commitPhases) float64 { return p.Diff }},
			{"verify", func(p commitPhases) float64 { return p.Verify }},
			{"measure + read-only", func(p commitPhases) float64 { return p.Measure }},
			{"content index", func(p commitPhases) float64 { return p.Index }},
			{"journal, renames, record", func(p commitPhases) float64 { return p.Journal }},
			{"previous snapshot's sizes", func(p commitPhases) float64 { return p.Refresh }},
			{"Commit total", func(p commitPhases) float64 { return p.Commit }},
			{"Begin + Commit", func(p commitPhases) float64 { return p.Clone + p.Commit }},
			{"peak RSS of the run (MB)", func(p commitPhases) float64 { return p.RSSMB }},
		}
		for _, row := range rows {
			fmt.Printf("%-28s", row.name)
			for _, m := range modes {
				var v []float64
				for _, p := range results[m] {
					v = append(v, row.get(p))
				}
				slices.Sort(v)
				fmt.Printf(" %24s", fmt.Sprintf("%.0f (%.0f)", v[len(v)/2], v[0]))
			}
			fmt.Println()
		}
		last := modes[len(modes)-1]
		for _, p := range results[last] {
			b.ReportMetric(p.Clone+p.Commit, last+"-store-ms")
		}

		if full {
			continue // a full run clones nothing
		}
		// The clone alone, by worker count, alternating up and down, best of two; cp -al
		// for reference.
		s := stores[last]
		latest := s.LatestDir(dev.udid)
		best := map[string]time.Duration{}
		names := []string{"1", "2", "3", "4", "cp -al"}
		for round := 0; round < 2; round++ {
			order := slices.Clone(names)
			if round == 1 {
				slices.Reverse(order)
			}
			for _, w := range order {
				dst := filepath.Join(s.l.root, "clone-bench")
				t0 := time.Now()
				if w == "cp -al" {
					if out, err := exec.Command("cp", "-al", latest, dst).CombinedOutput(); err != nil {
						b.Fatalf("cp -al: %v %s", err, out)
					}
				} else {
					n, _ := strconv.Atoi(w)
					if err := s.cloneTreeWorkers(ctx, latest, dst, CloneHardlink, n); err != nil {
						b.Fatal(err)
					}
				}
				d := time.Since(t0)
				if old, ok := best[w]; !ok || d < old {
					best[w] = d
				}
				if err := os.RemoveAll(dst); err != nil {
					b.Fatal(err)
				}
			}
		}
		fmt.Printf("clone of the latest backup (best of 2):")
		for _, w := range names {
			label := w
			if w != "cp -al" {
				label += " worker(s)"
			}
			fmt.Printf("  %s %dms", label, best[w].Milliseconds())
		}
		fmt.Println()
	}
}

func benchEnv(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// commitPhases are one run's figures in milliseconds, from the child's hook calls.
// commitPhases are one run's steps in ms. On the incremental path the Manifest.db row pass
// runs while the listings are compared (diffVerify): Diff is the listings, Verify what the
// row pass needed beyond them.
type commitPhases struct {
	Clone, Write, Diff, Verify, Measure, Index, Journal, Refresh, Commit float64
	RSSMB                                                                float64
	HWM                                                                  map[string]int // VmHWM (KiB) when each step ended
}

// vmHWM is this process's peak resident set so far, in KiB (Linux /proc).
func vmHWM() int {
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			return n
		}
	}
	return 0
}

// commitChild runs one incremental run of the store at dir in a child process.
func commitChild(b *testing.B, dir, mode string) commitPhases {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCommitBenchChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "SNAPBACK_COMMITBENCH_DIR="+dir, "SNAPBACK_COMMITBENCH_MODE="+mode)
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("child: %v\n%s", err, out)
	}
	var p commitPhases
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	found := false
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "PHASES "); ok {
			found = json.Unmarshal([]byte(rest), &p) == nil
		}
	}
	if !found {
		b.Fatalf("child printed no phases:\n%s", out)
	}
	if os.Getenv("SNAPBACK_BENCH_HWM") != "" {
		fmt.Printf("%s: peak RSS (KiB) after each step: %v\n", mode, p.HWM)
	}
	// The child's own VmHWM, not the rusage from wait4: Go starts children with
	// clone(CLONE_VM|CLONE_VFORK), and Linux records the parent's high-water mark as the
	// child's ru_maxrss at exec, so that figure is the benchmark's, not the run's.
	p.RSSMB = float64(p.HWM["end"]) / 1024
	return p
}

// TestCommitBenchChild is the child process of BenchmarkCommitIncremental: one run of the
// store at SNAPBACK_COMMITBENCH_DIR with the changes its parent left in pending/.
func TestCommitBenchChild(t *testing.T) {
	dir := os.Getenv("SNAPBACK_COMMITBENCH_DIR")
	if dir == "" {
		t.Skip("child process of BenchmarkCommitIncremental")
	}
	marks := map[string]time.Time{}
	hwm := map[string]int{"open": 0}
	opts := testOptions(&fakeClock{t: epoch.Add(time.Duration(time.Now().UnixNano()%1e9) * time.Millisecond), step: time.Minute})
	opts.fullScan = os.Getenv("SNAPBACK_COMMITBENCH_MODE") == "before"
	opts.hook = func(p string) {
		if strings.HasPrefix(p, "commit:") {
			marks[p] = time.Now()
			hwm[p] = vmHWM()
		}
	}
	ctx := context.Background()
	s, err := Open(ctx, dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	hwm["open"] = vmHWM()
	t0 := time.Now()
	r, err := s.Begin(ctx, testUDID, BeginOptions{Full: os.Getenv("SNAPBACK_BENCH_FULL") != ""})
	if err != nil {
		t.Fatal(err)
	}
	t1 := time.Now()
	hwm["begin"] = vmHWM()
	if err := applyPending(filepath.Join(dir, "pending"), r.Dir()); err != nil {
		t.Fatal(err)
	}
	t2 := time.Now()
	if _, err := r.Commit(ctx, CommitMeta{}); err != nil {
		t.Fatal(err)
	}
	t3 := time.Now()
	hwm["end"] = vmHWM()
	diffEnd := t2
	if m, ok := marks["commit:delta"]; ok {
		diffEnd = m
	}
	if m, ok := marks["commit:fresh"]; ok {
		diffEnd = m
	}
	ms := func(a, b time.Time) float64 { return float64(b.Sub(a).Microseconds()) / 1000 }
	p := commitPhases{Clone: ms(t0, t1), Write: ms(t1, t2), Commit: ms(t2, t3),
		Diff:    ms(t2, diffEnd),
		Verify:  ms(diffEnd, marks["commit:verified"]),
		Measure: ms(marks["commit:verified"], marks["commit:measured"]),
		Index:   ms(marks["commit:measured"], marks["commit:indexed"]),
		Journal: ms(marks["commit:indexed"], marks["commit:record"]),
		Refresh: ms(marks["commit:record"], marks["commit:refreshed"]),
		HWM:     hwm,
	}
	b, _ := json.Marshal(p)
	fmt.Println("PHASES " + string(b))
}

// writePending writes what the device sends in its next run into dir (outside any backup, on
// the store's filesystem): the changed files as blobs, the new Manifest.db and plists, and
// removed.txt naming the deleted blobs. applyPending moves them into a staging folder as the
// engine would (new file renamed over the name).
func (d *benchDevice) writePending(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for i := range d.dirty {
		p := backupfmt.BlobPath(dir, backupfmt.FileID("CameraRollDomain", benchName(i)))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, benchContent(i, d.ver[i]), 0o644); err != nil {
			return err
		}
	}
	var removed strings.Builder
	for i := range d.removed {
		fmt.Fprintln(&removed, backupfmt.FileID("CameraRollDomain", benchName(i)))
	}
	if err := os.WriteFile(filepath.Join(dir, "removed.txt"), []byte(removed.String()), 0o644); err != nil {
		return err
	}
	w, err := backupfmt.CreateManifestDB(filepath.Join(dir, backupfmt.ManifestDBName))
	if err != nil {
		return err
	}
	for i, v := range d.ver {
		n := benchName(i)
		if err := w.Add(backupfmt.Record{FileID: backupfmt.FileID("CameraRollDomain", n), Domain: "CameraRollDomain", RelativePath: n,
			Flags: backupfmt.FlagFile, File: backupfmt.MBFile{Size: int64(benchSize(i, v)), Mode: 0o100644}}); err != nil {
			return err
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	info, _ := backupfmt.Info{DeviceName: "Bench", TargetIdentifier: d.udid, UniqueIdentifier: d.udid}.Marshal()
	mp, _ := backupfmt.Manifest{Version: "10.0"}.Marshal()
	st, _ := backupfmt.Status{SnapshotState: backupfmt.SnapshotFinished, Version: "3.3"}.Marshal()
	for name, data := range map[string][]byte{backupfmt.InfoPlistName: info, backupfmt.ManifestPlistName: mp, backupfmt.StatusPlistName: st} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// commitPending runs one backup of udid into s whose device sends what pending holds.
func commitPending(tb testing.TB, s *Store, udid, pending string) {
	tb.Helper()
	ctx := context.Background()
	r, err := s.Begin(ctx, udid, BeginOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	if err := applyPending(pending, r.Dir()); err != nil {
		tb.Fatal(err)
	}
	if _, err := r.Commit(ctx, CommitMeta{}); err != nil {
		tb.Fatal(err)
	}
}

func applyPending(pending, staging string) error {
	removed, err := os.ReadFile(filepath.Join(pending, "removed.txt"))
	if err != nil {
		return err
	}
	for _, id := range strings.Fields(string(removed)) {
		if err := os.Remove(backupfmt.BlobPath(staging, id)); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	entries, err := os.ReadDir(pending)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() {
			continue
		}
		if err := os.MkdirAll(filepath.Join(staging, name), 0o755); err != nil {
			return err
		}
		blobs, err := os.ReadDir(filepath.Join(pending, name))
		if err != nil {
			return err
		}
		for _, bl := range blobs {
			if err := os.Rename(filepath.Join(pending, name, bl.Name()), filepath.Join(staging, name, bl.Name())); err != nil {
				return err
			}
		}
	}
	// Metadata last, Status.plist (which says the backup finished) at the very end.
	for _, name := range []string{backupfmt.ManifestDBName, backupfmt.InfoPlistName, backupfmt.ManifestPlistName, backupfmt.StatusPlistName} {
		if err := os.Rename(filepath.Join(pending, name), filepath.Join(staging, name)); err != nil {
			return err
		}
	}
	return os.RemoveAll(pending)
}
