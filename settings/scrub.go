package settings

import (
	"fmt"
	"strconv"
	"strings"
)

// Scrub bounds the daily re-reading of stored files that finds bit rot while the device can
// still re-send a file. It is global: it is a property of this computer's disks and time,
// not of a device. Both limits apply (whichever reads less); 0 in either turns the scrub off.
type Scrub struct {
	MaxBytesPerDay   int64
	MaxPercentPerDay int
}

// Off reports whether the scrub is turned off.
func (s Scrub) Off() bool { return s.MaxBytesPerDay == 0 || s.MaxPercentPerDay == 0 }

// DefaultScrub is at most 1 GB or 5% of a store a day: a whole store is re-read every few
// weeks without a daily backup taking noticeably longer.
func DefaultScrub() Scrub { return Scrub{MaxBytesPerDay: 1 << 30, MaxPercentPerDay: 5} }

type fileScrub struct {
	MaxBytesPerDay   *string `mapstructure:"max_bytes_per_day" yaml:"max_bytes_per_day,omitempty"`
	MaxPercentPerDay *int    `mapstructure:"max_percent_per_day" yaml:"max_percent_per_day,omitempty"`
}

// ParseBytes reads a size: a number of bytes, or a number with a unit K, KB, KiB, M, MB, MiB,
// G, GB, GiB, T, TB, TiB (binary multiples, as ParseRate). "" is 0.
func ParseBytes(s string) (int64, error) {
	v, err := scaledNumber(s, strings.TrimSpace(s), "a size", sizeUnits)
	if err != nil {
		return 0, err
	}
	if v >= 1<<62 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return int64(v), nil
}

// sizeUnits are ParseBytes's units in bytes (binary multiples, as ParseRate).
var sizeUnits = map[string]float64{
	"": 1, "b": 1,
	"k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10,
	"m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
	"g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30,
	"t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40,
}

// FormatBytes writes a size the way ParseBytes reads it.
func FormatBytes(n int64) string {
	for _, u := range []struct {
		unit string
		size int64
	}{{"TB", 1 << 40}, {"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10}} {
		if n != 0 && n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.unit
		}
	}
	return strconv.FormatInt(n, 10)
}

// applyScrub overlays the file's scrub key on s.
func applyScrub(s *Scrub, f *fileScrub, probs *[]error) {
	if f == nil {
		return
	}
	if f.MaxBytesPerDay != nil {
		n, err := ParseBytes(*f.MaxBytesPerDay)
		if err != nil {
			*probs = append(*probs, &Problem{Key: "scrub.max_bytes_per_day", Problem: err.Error(),
				Fix: `write a size such as "1GB" or "500MB" (0 turns the scrub off)`})
		} else {
			s.MaxBytesPerDay = n
		}
	}
	if f.MaxPercentPerDay != nil {
		s.MaxPercentPerDay = *f.MaxPercentPerDay
	}
}

func validateScrub(s Scrub) []error {
	if s.MaxPercentPerDay < 0 || s.MaxPercentPerDay > 100 {
		return []error{&Problem{Key: "scrub.max_percent_per_day", Problem: fmt.Sprintf("%d is not a percentage from 0 to 100", s.MaxPercentPerDay),
			Fix: "write a whole percentage such as 5 (0 turns the scrub off)"}}
	}
	return nil
}
