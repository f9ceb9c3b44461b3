// Package humanize writes sizes for people, the one way the tray, the notifications and the
// status page show them (so that the three never disagree about the same backup).
package humanize

import "fmt"

var units = []string{"B", "KB", "MB", "GB", "TB"}

// scale returns n in its largest decimal unit below 1000 and that unit's index.
func scale(n int64) (float64, int) {
	v, u := float64(n), 0
	for v >= 999.95 && u < len(units)-1 {
		v /= 1000
		u++
	}
	return v, u
}

// Bytes uses decimal units, as Finder and iOS do: "2.9 GB", "120 MB", "512 B"; one decimal
// below 10 unless the value is whole.
func Bytes(n int64) string {
	v, u := scale(n)
	if v < 10 && v != float64(int64(v)) {
		return fmt.Sprintf("%.1f %s", v, units[u])
	}
	return fmt.Sprintf("%.0f %s", v, units[u])
}

// BytesOf renders done in total's unit: "1.2 of 2.9 GB".
func BytesOf(done, total int64) string {
	tv, u := scale(total)
	dv := float64(done)
	for range u {
		dv /= 1000
	}
	if tv < 10 {
		return fmt.Sprintf("%.1f of %.1f %s", dv, tv, units[u])
	}
	return fmt.Sprintf("%.0f of %.0f %s", dv, tv, units[u])
}
