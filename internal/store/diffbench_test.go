//go:build linux

package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"snapback/internal/backupfmt"
	"snapback/internal/testenv"
)

// BenchmarkDiffTree times the commit's comparison of the staging folder with the latest
// backup (diffTree), the commit's longest serial step, with one worker (the way before) and
// with cloneWorkers, alternating, SNAPBACK_BENCH_RUNS rounds (default 5): a latest backup of
// SNAPBACK_BENCH_FILES blobs (default 100,000) in the 256 prefix folders, a hard-link clone
// of it with 1% of the files replaced, on a journaled ext4 loop image. The folders are warm
// in the cache, as right after a backup. Run with -benchtime 1x.
func BenchmarkDiffTree(b *testing.B) {
	files := benchEnv("SNAPBACK_BENCH_FILES", 100000)
	runs := benchEnv("SNAPBACK_BENCH_RUNS", 5)
	root, note := testenv.JournaledExt4(b, int64(files)*8192+(256<<20), int64(files)*3)
	latest, staged := filepath.Join(root, "latest"), filepath.Join(root, "staged")
	small := []byte("x")
	for i := range 256 {
		if err := os.MkdirAll(filepath.Join(latest, fmt.Sprintf("%02x", i)), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	for i := range files {
		p := backupfmt.BlobPath(latest, backupfmt.FileID("HomeDomain", fmt.Sprint(i)))
		if err := os.WriteFile(p, small, 0o444); err != nil {
			b.Fatal(err)
		}
	}
	s := &Store{opts: Options{}}
	if err := linkSubtree(context.Background(), latest, staged, func() {}); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < files; i += 100 { // 1% replaced: a new inode under the old name
		p := backupfmt.BlobPath(staged, backupfmt.FileID("HomeDomain", fmt.Sprint(i)))
		if err := writeRenamed(p, small); err != nil {
			b.Fatal(err)
		}
	}
	serial := &Store{opts: Options{fullScan: true}}
	times := map[int][]time.Duration{}
	allocs := map[int]uint64{} // bytes allocated by one diff, the last round's
	b.ResetTimer()
	for range b.N {
		for r := range runs {
			order := []*Store{serial, s}
			if r%2 == 1 {
				order = []*Store{s, serial}
			}
			for _, st := range order {
				var m0, m1 runtime.MemStats
				runtime.ReadMemStats(&m0)
				t0 := time.Now()
				d, err := st.diffTree(context.Background(), staged, latest, files)
				el := time.Since(t0)
				runtime.ReadMemStats(&m1)
				if err != nil || len(d.written) != files/100 || len(d.present) != files {
					b.Fatalf("diff: %d written, %d present, %v", len(d.written), len(d.present), err)
				}
				w := st.cloneWorkers()
				times[w] = append(times[w], el)
				allocs[w] = m1.TotalAlloc - m0.TotalAlloc
			}
		}
	}
	b.StopTimer()
	fmt.Printf("\ndiffTree, %d files, 1%% replaced; %s; %d rounds alternating\n", files, note, runs)
	for _, w := range []int{1, cloneWorkers} {
		t := slices.Clone(times[w])
		slices.Sort(t)
		fmt.Printf("  %d worker(s): min %.3f s, median %.3f s; %.1f MB allocated\n", w, t[0].Seconds(), t[len(t)/2].Seconds(), float64(allocs[w])/1e6)
	}
}
