package backupsim

import (
	"net"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection: closer to the real link (kernel
// buffers, no synchronous hand-off) than net.Pipe.
func tcpPair(tb testing.TB) func() (net.Conn, net.Conn) {
	return func() (net.Conn, net.Conn) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		defer l.Close()
		ch := make(chan net.Conn, 1)
		go func() {
			c, _ := l.Accept()
			ch <- c
		}()
		host, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			tb.Fatal(err)
		}
		return host, <-ch
	}
}

// peakHeap samples the heap in use until stop is called and returns the maximum in MB.
func peakHeap() (stop func() float64) {
	var (
		mu   sync.Mutex
		peak uint64
		done = make(chan struct{})
		wg   sync.WaitGroup
	)
	sample := func() {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		mu.Lock()
		peak = max(peak, m.HeapInuse)
		mu.Unlock()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				sample()
			}
		}
	}()
	return func() float64 {
		close(done)
		wg.Wait()
		sample()
		return float64(peak) / (1 << 20)
	}
}

// BenchmarkContent measures how fast file bytes are generated.
func BenchmarkContent(b *testing.B) {
	buf := make([]byte, 32<<10)
	b.SetBytes(int64(len(buf)))
	r := &contentReader{key: 1, size: 1 << 62}
	for b.Loop() {
		r.Read(buf)
	}
}

// BenchmarkFullBackupLarge: a full backup of few large files (256 MB) over loopback TCP to a
// host that discards the data: the simulator's own upload speed.
func BenchmarkFullBackupLarge(b *testing.B) {
	benchBackup(b, Options{Seed: 1, Files: 100, TotalSize: 256 << 20})
}

// BenchmarkFullBackupLargeEncrypted is BenchmarkFullBackupLarge with AES-256-CBC on every
// blob, as an encrypting device sends them.
func BenchmarkFullBackupLargeEncrypted(b *testing.B) {
	benchBackup(b, Options{Seed: 1, Files: 100, TotalSize: 256 << 20, Password: "bench", KDFRounds: 1000})
}

// BenchmarkFullBackupManyFiles: 100,000 files (200 MB): Manifest.db generation and per-file
// framing dominate.
func BenchmarkFullBackupManyFiles(b *testing.B) {
	benchBackup(b, Options{Seed: 2, Files: 100_000, TotalSize: 200 << 20})
}

func benchBackup(b *testing.B, o Options) {
	d := newTestDevice(b, o)
	var total int64
	for _, f := range d.Files() {
		total += f.Size
	}
	runtime.GC()
	stop := peakHeap()
	b.SetBytes(total)
	b.ResetTimer()
	for b.Loop() {
		h := &testHost{root: b.TempDir(), udid: testUDID, discardUpload: true, pipe: tcpPair(b)}
		res := h.session(b, d, nil, backupReq(true))
		if errorCode(b, res) != 0 {
			b.Fatal(res)
		}
	}
	b.StopTimer()
	b.ReportMetric(stop(), "peak-heap-MB")
	c := d.Counters()
	b.ReportMetric(float64(c.LastFilesUploaded), "files/op")
}

// BenchmarkFullBackupMillion: a 1,000,000-file, 2 GB device, to show that memory stays
// bounded. It takes minutes, so it runs only with BACKUPSIM_BIG=1.
func BenchmarkFullBackupMillion(b *testing.B) {
	if os.Getenv("BACKUPSIM_BIG") != "1" {
		b.Skip("set BACKUPSIM_BIG=1 to run the million-file benchmark")
	}
	benchBackup(b, Options{Seed: 4, Files: 1_000_000, TotalSize: 2 << 30})
}

// BenchmarkIncrementalManyFiles: the device's side of an incremental backup of a
// 100,000-file device after 1% changed, against a host that keeps what it receives. It
// measures what the device spends deciding what to send and rebuilding Manifest.db; with
// BACKUPSIM_BIG=1 the device has 1,000,000 files.
func BenchmarkIncrementalManyFiles(b *testing.B) {
	files := 100_000
	if os.Getenv("BACKUPSIM_BIG") == "1" {
		files = 1_000_000
	}
	d := newTestDevice(b, Options{Seed: 2, Files: files, TotalSize: int64(files) * 2048})
	h := &testHost{root: b.TempDir(), udid: testUDID, pipe: tcpPair(b)}
	if res := h.session(b, d, nil, backupReq(true)); errorCode(b, res) != 0 {
		b.Fatal(res)
	}
	runtime.GC()
	stop := peakHeap()
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		d.Mutate(1)
		b.StartTimer()
		if res := h.session(b, d, nil, backupReq(false)); errorCode(b, res) != 0 {
			b.Fatal(res)
		}
		if c := d.Counters(); c.LastFull {
			b.Fatal("the device made a full backup, want an incremental")
		}
	}
	b.StopTimer()
	b.ReportMetric(stop(), "peak-heap-MB")
	c := d.Counters()
	b.ReportMetric(float64(c.LastFilesUploaded), "files/op")
}
