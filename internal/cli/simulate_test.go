package cli

import "testing"

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"", 0},
		{"123", 123},
		{"2GB", 2_000_000_000},
		{"2gb", 2_000_000_000},
		{"500MB", 500_000_000},
		{"1.5GiB", 3 << 29},
		{"64K", 64 << 10},
		{"10 MiB", 10 << 20},
	} {
		got, err := parseSize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"abc", "-1GB", "1XB", "9999999TB"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) accepted a bad size", bad)
		}
	}
}
