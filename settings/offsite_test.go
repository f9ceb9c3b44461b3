package settings

import "testing"

func TestParseRate(t *testing.T) {
	for in, want := range map[string]int{"": 0, "0": 0, "500": 500, "500KiB/s": 500, "2MiB/s": 2048, "2M": 2048,
		"1.5 MB/s": 1536, "1GiB": 1 << 20, "0.1": 1, "300kbps": 300} {
		if got, err := ParseRate(in); err != nil || got != want {
			t.Errorf("ParseRate(%q) = %d, %v; want %d", in, got, err, want)
		}
		if got, _ := ParseRate(FormatRate(want)); got != want {
			t.Errorf("FormatRate(%d) = %q does not read back", want, FormatRate(want))
		}
	}
	for _, bad := range []string{"fast", "-1", "2TB/s", "1..2M"} {
		if _, err := ParseRate(bad); err == nil {
			t.Errorf("ParseRate(%q) accepted", bad)
		}
	}
}

func TestOffsiteDefaultsAndPerDevice(t *testing.T) {
	s, err := Parse([]byte("offsite: {repository: 'rest:http://127.0.0.1:8000/'}\ndevices:\n  - udid: 00008110-00000000000000AA\n    offsite: {schedule: manual}\n"))
	if err != nil {
		t.Fatal(err)
	}
	g := s.Global.Offsite
	if !g.Enabled() || g.Schedule != OffsiteAfterCommit || g.Keep != (OffsiteKeep{Daily: 7, Weekly: 4, Monthly: 12}) {
		t.Errorf("global offsite %+v", g)
	}
	a := s.Effective("00008110-00000000000000AA").Offsite
	if a.Repository != g.Repository || a.Schedule != OffsiteManual {
		t.Errorf("device offsite %+v: want the global repository with its own schedule", a)
	}
	if (Defaults().Offsite).Enabled() {
		t.Error("off-site copies must be off until a repository is set")
	}
}
