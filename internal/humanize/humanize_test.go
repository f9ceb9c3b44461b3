package humanize

import "testing"

func TestBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 999: "999 B", 1000: "1 KB", 1500: "1.5 KB", 120_000_000: "120 MB", 2_900_000_000: "2.9 GB", 42_000_000_000: "42 GB", 1_250_000_000_000: "1.2 TB"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
	if got := BytesOf(12_000_000_000, 58_000_000_000); got != "12 of 58 GB" {
		t.Errorf("BytesOf = %q", got)
	}
	if got := BytesOf(300_000_000, 2_900_000_000); got != "0.3 of 2.9 GB" {
		t.Errorf("BytesOf = %q", got)
	}
}
