package settings

import (
	"strings"
	"testing"
)

func TestScrubKey(t *testing.T) {
	// No key, and the commented example: the default budget.
	ex, err := Example()
	if err != nil {
		t.Fatal(err)
	}
	for _, data := range [][]byte{nil, ex} {
		s, err := Parse(data)
		if err != nil {
			t.Fatal(err)
		}
		if s.Scrub != DefaultScrub() || s.Scrub.Off() {
			t.Fatalf("scrub without a key: %+v, want %+v", s.Scrub, DefaultScrub())
		}
	}
	s, err := Parse([]byte("scrub: {max_bytes_per_day: 500MB, max_percent_per_day: 2}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Scrub != (Scrub{MaxBytesPerDay: 500 << 20, MaxPercentPerDay: 2}) {
		t.Fatalf("scrub: %+v", s.Scrub)
	}
	// It survives `config show` and reads back the same.
	y, err := s.YAML()
	if err != nil {
		t.Fatal(err)
	}
	if back, err := Parse(y); err != nil || back.Scrub != s.Scrub {
		t.Fatalf("config show round trip: %+v %v\n%s", back, err, y)
	}
	for _, off := range []string{"scrub: {max_bytes_per_day: 0}", "scrub: {max_percent_per_day: 0}", "scrub: {max_bytes_per_day: \"0\"}"} {
		s, err := Parse([]byte(off))
		if err != nil || !s.Scrub.Off() {
			t.Fatalf("%s: %+v %v, want off", off, s, err)
		}
	}
	t.Setenv("SNAPBACK_SCRUB_MAX_BYTES_PER_DAY", "2GB")
	if s, err := Parse(nil); err != nil || s.Scrub.MaxBytesPerDay != 2<<30 {
		t.Fatalf("environment: %+v %v", s, err)
	}
}

func TestScrubKeyProblems(t *testing.T) {
	for _, c := range []struct{ file, key, fix string }{
		{"scrub: {max_bytes_per_day: lots}", "scrub.max_bytes_per_day", `"1GB"`},
		{"scrub: {max_bytes_per_day: 5XB}", "scrub.max_bytes_per_day", `"1GB"`},
		{"scrub: {max_percent_per_day: 150}", "scrub.max_percent_per_day", "such as 5"},
		{"scrub: {max_percent_per_day: -1}", "scrub.max_percent_per_day", "such as 5"},
		{"scrub: {max_percent_per_day: half}", "scrub.max_percent_per_day", "whole number"},
		{"scrub: {every: 1d}", "scrub.every", ""},
		// Global only: a device entry cannot carry it.
		{"devices:\n  - udid: 00008030-001A2B3C4D5E802E\n    scrub: {max_percent_per_day: 1}\n", "devices[0].scrub", ""},
	} {
		_, err := Parse([]byte(c.file))
		if err == nil || !strings.Contains(err.Error(), c.key) || !strings.Contains(err.Error(), c.fix) {
			t.Errorf("%q: %v, want a problem naming %s and %q", c.file, err, c.key, c.fix)
		}
	}
}
