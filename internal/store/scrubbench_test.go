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
	"strings"
	"testing"
	"time"

	"snapback/internal/testenv"
)

// BenchmarkScrubAndDelete measures the two store operations that run in the backup process
// besides the commit, on a SNAPBACK_BENCH_FILES-file device (default 100,000; KiB mean
// SNAPBACK_BENCH_KB, default 2) with 6 snapshots at 1% churn each, on a journaled ext4 loop
// image: a daily scrub (10% of the store) and the deletion of the second-oldest snapshot
// (its neighbours' sizes). Each is a child process, so the peak RSS printed is its own
// (VmHWM; see commitChild). SNAPBACK_BENCH_OLDTEST names a test binary of an older version
// built with this file (go test -c) to run the same children for a "before" column; each
// column deletes its own snapshot. Run with -benchtime 1x.
func BenchmarkScrubAndDelete(b *testing.B) {
	files := benchEnv("SNAPBACK_BENCH_FILES", 100000)
	kb := benchEnv("SNAPBACK_BENCH_KB", 2)
	benchMeanSize = kb << 10
	root, note := testenv.JournaledExt4(b, int64(files)*(int64(kb)<<10+4096)*2+(1<<30), int64(files*3))
	bins := []struct{ name, path string }{}
	if old := os.Getenv("SNAPBACK_BENCH_OLDTEST"); old != "" {
		bins = append(bins, struct{ name, path string }{"before", old})
	}
	bins = append(bins, struct{ name, path string }{"after", os.Args[0]})
	for range b.N {
		dev := newBenchDevice(files)
		dir := filepath.Join(root, "store")
		s := openStore(b, dir, testOptions(&fakeClock{t: epoch, step: time.Hour}))
		t0 := time.Now()
		for run := 0; run < 6; run++ {
			if run > 0 {
				dev.churn(1)
			}
			pending := filepath.Join(dir, "pending")
			if err := dev.writePending(pending); err != nil {
				b.Fatal(err)
			}
			clear(dev.dirty)
			clear(dev.removed)
			commitPending(b, s, dev.udid, pending)
		}
		fmt.Printf("\nscrub and deletion: %d files of %d KiB mean, 6 snapshots, %s (setup %s)\n",
			files, kb, note, time.Since(t0).Round(time.Second))
		fmt.Printf("%-34s %14s %14s %10s %10s\n", "", "ms", "peak RSS MB", "files", "MB read")
		for _, op := range []string{"scrub", "delete"} {
			for _, bin := range bins {
				res := scrubBenchChild(b, bin.path, dir, op)
				fmt.Printf("%-34s %14.0f %14.1f %10d %10.1f\n", op+" ("+bin.name+")", res.MS, float64(res.HWM)/1024, res.Files, float64(res.Bytes)/1e6)
				if bin.name == "after" {
					b.ReportMetric(float64(res.HWM)/1024, op+"-MB")
				}
			}
		}
	}
}

type scrubBenchResult struct {
	MS    float64
	Bytes int64
	HWM   int // KiB
	Files int
}

func scrubBenchChild(b *testing.B, bin, dir, op string) scrubBenchResult {
	b.Helper()
	cmd := exec.Command(bin, "-test.run=^TestScrubBenchChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "SNAPBACK_SCRUBBENCH_DIR="+dir, "SNAPBACK_SCRUBBENCH_OP="+op)
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("child: %v\n%s", err, out)
	}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "RESULT "); ok {
			var r scrubBenchResult
			if json.Unmarshal([]byte(rest), &r) == nil {
				return r
			}
		}
	}
	b.Fatalf("child printed no result:\n%s", out)
	return scrubBenchResult{}
}

// TestScrubBenchChild is the child process of BenchmarkScrubAndDelete.
func TestScrubBenchChild(t *testing.T) {
	dir := os.Getenv("SNAPBACK_SCRUBBENCH_DIR")
	if dir == "" {
		t.Skip("child process of BenchmarkScrubAndDelete")
	}
	ctx := context.Background()
	s, err := Open(ctx, dir, testOptions(&fakeClock{t: epoch.Add(1000 * time.Hour), step: time.Minute}))
	if err != nil {
		t.Fatal(err)
	}
	var res scrubBenchResult
	t0 := time.Now()
	switch os.Getenv("SNAPBACK_SCRUBBENCH_OP") {
	case "scrub":
		rep, err := s.Scrub(ctx, testUDID, ScrubBudget{MaxPercent: 10})
		if err != nil {
			t.Fatal(err)
		}
		res.Files, res.Bytes = rep.Files, rep.Bytes
	case "delete":
		list, err := s.List(testUDID)
		if err != nil || len(list) < 3 {
			t.Fatalf("%d snapshots: %v", len(list), err)
		}
		if err := s.Delete(ctx, testUDID, list[1].ID); err != nil {
			t.Fatal(err)
		}
		res.Files = list[1].FileCount
	}
	res.MS = float64(time.Since(t0).Microseconds()) / 1000
	res.HWM = vmHWM()
	out, _ := json.Marshal(res)
	fmt.Println("RESULT " + string(out))
}
