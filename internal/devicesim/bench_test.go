package devicesim

import (
	"context"
	"io"
	"testing"
)

// sinkBackup sends n bytes in 32 KiB writes, the block size devices use.
type sinkBackup struct{ n int64 }

func (s sinkBackup) Serve(_ context.Context, rw io.ReadWriter, _ Notifier) error {
	buf := make([]byte, 32<<10)
	for sent := int64(0); sent < s.n; sent += int64(len(buf)) {
		if _, err := rw.Write(buf); err != nil {
			return err
		}
	}
	return nil
}

// BenchmarkBackupLink measures the simulated link itself: device → usbmuxd TCP pipe →
// service TLS → host, with no backup protocol on top. The host side must beat this.
func BenchmarkBackupLink(b *testing.B) {
	sim, err := Start(Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer sim.Close()
	const size = 64 << 20
	d, err := sim.AddDevice(DeviceConfig{Backup: sinkBackup{size}})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	b.ResetTimer()
	for range b.N {
		tc, _ := startBackupService(b, sim, d, d.PairRecord().EscrowBag)
		if tc == nil {
			b.Fatal("service did not start")
		}
		n, err := io.Copy(io.Discard, tc)
		if err != nil || n != size {
			b.Fatalf("got %d bytes, %v", n, err)
		}
		tc.Close()
	}
}

// BenchmarkNewPairing is the cost of AddDevice without a StateDir (three RSA-2048 keys).
func BenchmarkNewPairing(b *testing.B) {
	for range b.N {
		if _, err := newPairing("BUID", "aa:bb:cc:dd:ee:ff"); err != nil {
			b.Fatal(err)
		}
	}
}
