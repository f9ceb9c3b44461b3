package settings

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestExampleHasEveryKeyAndLoadsAsDefaults(t *testing.T) {
	data, err := Example()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range Keys() {
		leaf := k[strings.LastIndex(k, ".")+1:]
		if !strings.Contains(string(data), "\n"+strings.Repeat("  ", strings.Count(k, "."))+leaf+":") {
			t.Errorf("example lacks key %s", k)
		}
	}
	s, err := Parse(data)
	if err != nil {
		t.Fatalf("example does not load: %v", err)
	}
	if !reflect.DeepEqual(s.Global, Defaults()) {
		t.Fatalf("example loads as\n%+v\nwant defaults\n%+v", s.Global, Defaults())
	}
}

// nonDefault is a file that sets every key, globally and on a device, away from its default.
const nonDefault = `
location: /srv/backups
transport: usb
schedule: {enabled: false, window: "22:00-06:00", retry_delay: 7m, max_retries: 5}
snapshots: {enabled: false, auto_delete: false, max_extra_percent: 80, min_age: 10d, ask_before_delete: false, keep_daily: 7, keep_weekly: 4, keep_monthly: 12}
encryption: "on"
conditions: {min_battery: 55, require_charging: true}
notifications: {passcode: false, completed: false, failed: false, disk_missing: false, overdue: false, approval: false, overdue_after_days: 9}
offsite: {repository: "sftp:nas:/srv/restic", schedule: daily, limit_upload: 2MiB/s, keep: {last: 1, hourly: 2, daily: 3, weekly: 4, monthly: 5, yearly: 6}}
devices:
  - udid: 00008030-001A2B3C4D5E802E
    name: Anna's iPhone
    location: /mnt/anna
    transport: wifi
    schedule: {enabled: true, window: "08:30-12:00", retry_delay: 1h, max_retries: 1}
    snapshots: {enabled: true, auto_delete: true, max_extra_percent: 20, min_age: 2h, ask_before_delete: true, keep_daily: 1, keep_weekly: 2, keep_monthly: 3}
    encryption: "off"
    conditions: {min_battery: 5, require_charging: false}
    notifications: {passcode: true, completed: true, failed: true, disk_missing: true, overdue: true, approval: true, overdue_after_days: 2}
    offsite: {repository: /mnt/usb/restic, schedule: MANUAL, limit_upload: 500, keep: {last: 0, hourly: 0, daily: 1, weekly: 0, monthly: 0, yearly: 0}}
  - udid: 0123456789abcdef0123456789abcdef01234567
    schedule: {window: "10:00-11:00"}
`

func TestEveryKeyRoundTrips(t *testing.T) {
	s, err := Parse([]byte(nonDefault))
	if err != nil {
		t.Fatal(err)
	}
	wantGlobal := DeviceSettings{
		Location: "/srv/backups", Transport: TransportUSB,
		Schedule:      Schedule{Enabled: false, Window: Window{22 * 60, 6 * 60}, RetryDelay: 7 * time.Minute, MaxRetries: 5},
		Snapshots:     Snapshots{MaxExtraPercent: 80, MinAge: 240 * time.Hour, KeepDaily: 7, KeepWeekly: 4, KeepMonthly: 12},
		Encryption:    EncryptionOn,
		Conditions:    Conditions{MinBattery: 55, RequireCharging: true},
		Notifications: Notifications{OverdueAfterDays: 9},
		Offsite: Offsite{Repository: "sftp:nas:/srv/restic", Schedule: OffsiteDaily, LimitUploadKiB: 2048,
			Keep: OffsiteKeep{Last: 1, Hourly: 2, Daily: 3, Weekly: 4, Monthly: 5, Yearly: 6}},
	}
	if !reflect.DeepEqual(s.Global, wantGlobal) {
		t.Fatalf("global:\n got %+v\nwant %+v", s.Global, wantGlobal)
	}
	anna := s.Effective("00008030-001A2B3C4D5E802E")
	wantAnna := DeviceSettings{
		UDID: "00008030-001A2B3C4D5E802E", Name: "Anna's iPhone",
		Location: "/mnt/anna", Transport: TransportWiFi,
		Schedule:      Schedule{Enabled: true, Window: Window{8*60 + 30, 12 * 60}, RetryDelay: time.Hour, MaxRetries: 1},
		Snapshots:     Snapshots{Enabled: true, AutoDelete: true, MaxExtraPercent: 20, MinAge: 2 * time.Hour, AskBeforeDelete: true, KeepDaily: 1, KeepWeekly: 2, KeepMonthly: 3},
		Encryption:    EncryptionOff,
		Conditions:    Conditions{MinBattery: 5},
		Notifications: Notifications{true, true, true, true, true, true, 2},
		Offsite:       Offsite{Repository: "/mnt/usb/restic", Schedule: OffsiteManual, LimitUploadKiB: 500, Keep: OffsiteKeep{Daily: 1}},
	}
	if !reflect.DeepEqual(anna, wantAnna) {
		t.Fatalf("device (UDID case must survive):\n got %+v\nwant %+v", anna, wantAnna)
	}
	// A partial override inherits everything else from the global settings.
	old := s.Effective("0123456789abcdef0123456789abcdef01234567")
	want := wantGlobal
	want.UDID = "0123456789abcdef0123456789abcdef01234567"
	want.Schedule.Window = Window{10 * 60, 11 * 60}
	if !reflect.DeepEqual(old, want) {
		t.Fatalf("partial override:\n got %+v\nwant %+v", old, want)
	}
	// An unknown device gets the globals.
	if g := s.Effective("unknown"); g.Location != "/srv/backups" || g.UDID != "unknown" {
		t.Fatalf("unknown device: %+v", g)
	}
	// show -> file -> load gives the same settings back.
	out, err := s.YAML()
	if err != nil {
		t.Fatal(err)
	}
	s2, err := Parse(out)
	if err != nil {
		t.Fatalf("show output does not load: %v\n%s", err, out)
	}
	if !reflect.DeepEqual(s2.Global, s.Global) || !reflect.DeepEqual(s2.Effective(anna.UDID), anna) {
		t.Fatalf("show round trip differs:\n%s", out)
	}
}

func TestInvalidValuesNameTheirKey(t *testing.T) {
	cases := []struct{ yaml, key string }{
		{"location: relative/path", "location"},
		{"location: ''", "location"},
		{"transport: bluetooth", "transport"},
		{"encryption: maybe", "encryption"},
		{"schedule: {window: '25:00-23:00'}", "schedule.window"},
		{"schedule: {window: '9-5'}", "schedule.window"},
		{"schedule: {window: '10:00-10:00'}", "schedule.window"},
		{"schedule: {retry_delay: soon}", "schedule.retry_delay"},
		{"schedule: {retry_delay: 5s}", "schedule.retry_delay"},
		{"schedule: {max_retries: -1}", "schedule.max_retries"},
		{"schedule: {max_retries: lots}", "schedule.max_retries"},
		{"schedule: {enabled: perhaps}", "schedule.enabled"},
		{"snapshots: {max_extra_percent: 0}", "snapshots.max_extra_percent"},
		{"snapshots: {min_age: -3d}", "snapshots.min_age"},
		{"snapshots: {keep_daily: -1}", "snapshots.keep_daily"},
		{"snapshots: {keep_weekly: -1}", "snapshots.keep_weekly"},
		{"snapshots: {keep_monthly: -1}", "snapshots.keep_monthly"},
		{"conditions: {min_battery: 101}", "conditions.min_battery"},
		{"notifications: {overdue_after_days: -2}", "notifications.overdue_after_days"},
		{"offsite: {repository: relative/repo}", "offsite.repository"},
		{"offsite: {repository: 'sftp:'}", "offsite.repository"},
		{"offsite: {schedule: hourly}", "offsite.schedule"},
		{"offsite: {limit_upload: fast}", "offsite.limit_upload"},
		{"offsite: {limit_upload: 2TB/s}", "offsite.limit_upload"},
		{"offsite: {keep: {daily: -1}}", "offsite.keep.daily"},
		{"offsite: {keep: {forever: 1}}", "offsite.keep.forever"},
		{"devices: [{udid: A, offsite: {schedule: weekly}}]", "devices[0].offsite.schedule"},
		{"schedule: {windw: '09:00-10:00'}", "schedule.windw"},
		{"devices: [{name: x}]", "devices[0].udid"},
		{"devices: [{udid: A}, {udid: A}]", "devices[1].udid"},
		{"devices: [{udid: A, transport: cable}]", "devices[0].transport"},
		{"devices: [{udid: A, schedule: {window: x}}]", "devices[0].schedule.window"},
		{"schedule: [1, 2", "(file)"},
	}
	for _, c := range cases {
		_, err := Parse([]byte(c.yaml))
		if err == nil {
			t.Errorf("%s: accepted, want a problem with %s", c.yaml, c.key)
			continue
		}
		if !strings.Contains(err.Error(), c.key+":") || !strings.Contains(err.Error(), "fix:") {
			t.Errorf("%s: error %q does not name key %s with a fix", c.yaml, err, c.key)
		}
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	_, err := Parse([]byte("transport: x\nencryption: y\nconditions: {min_battery: 200}\n"))
	var n int
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var p *Problem
		if errors.As(e, &p) {
			n++
		}
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			n += len(j.Unwrap())
		}
	}
	if n < 3 {
		t.Fatalf("got %d problems, want all 3: %v", n, err)
	}
}

func TestGlobalProblemReportedOnceNotPerDevice(t *testing.T) {
	_, err := Parse([]byte("transport: x\ndevices: [{udid: A}, {udid: B}]\n"))
	if c := strings.Count(err.Error(), "transport:"); c != 1 {
		t.Fatalf("transport problem reported %d times: %v", c, err)
	}
}

func TestEnvironmentOverrides(t *testing.T) {
	t.Setenv("SNAPBACK_SCHEDULE_WINDOW", "07:00-08:00")
	t.Setenv("SNAPBACK_CONDITIONS_REQUIRE_CHARGING", "true")
	t.Setenv("SNAPBACK_SNAPSHOTS_MAX_EXTRA_PERCENT", "70")
	t.Setenv("SNAPBACK_LOCATION", "/env/loc")
	s, err := Parse([]byte("schedule: {window: '09:00-10:00'}\n"))
	if err != nil {
		t.Fatal(err)
	}
	g := s.Global
	if g.Schedule.Window != (Window{7 * 60, 8 * 60}) || !g.Conditions.RequireCharging || g.Snapshots.MaxExtraPercent != 70 || g.Location != "/env/loc" {
		t.Fatalf("env not applied: %+v", g)
	}
	if EnvName("schedule.retry_delay") != "SNAPBACK_SCHEDULE_RETRY_DELAY" {
		t.Fatal(EnvName("schedule.retry_delay"))
	}
	t.Setenv("SNAPBACK_TRANSPORT", "pigeon")
	if _, err := Parse(nil); err == nil || !strings.Contains(err.Error(), "transport:") {
		t.Fatalf("bad env value: err = %v", err)
	}
}

func TestWindow(t *testing.T) {
	w, err := ParseWindow("22:00-06:00")
	if err != nil || !w.CrossesMidnight() || !w.Contains(23*60) || !w.Contains(0) || !w.Contains(5*60+59) || w.Contains(6*60) || w.Contains(21*60+59) {
		t.Fatalf("crossing window wrong: %v %v", w, err)
	}
	w, err = ParseWindow("00:00-24:00")
	if err != nil || !w.Contains(0) || !w.Contains(1439) || w.String() != "00:00-24:00" {
		t.Fatalf("whole day: %v %v", w, err)
	}
}

func TestDurations(t *testing.T) {
	for in, want := range map[string]time.Duration{"30d": 720 * time.Hour, "15m": 15 * time.Minute, "1h30m": 90 * time.Minute} {
		d, err := ParseDuration(in)
		if err != nil || d != want {
			t.Errorf("ParseDuration(%q) = %v, %v", in, d, err)
		}
		if back, _ := ParseDuration(FormatDuration(want)); back != want {
			t.Errorf("FormatDuration(%v) = %q does not read back", want, FormatDuration(want))
		}
	}
}

func TestWriteExampleNeverOverwritesWithoutForce(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sub", "config.yaml")
	if err := WriteExample(p, false); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(p, []byte("transport: usb\n"), 0o600)
	if err := WriteExample(p, false); !errors.Is(err, ErrExists) {
		t.Fatalf("second init: err = %v, want ErrExists", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "transport: usb\n" {
		t.Fatal("user file was overwritten")
	}
	if err := WriteExample(p, true); err != nil {
		t.Fatal(err)
	}
	s, err := Load(p)
	if err != nil || !reflect.DeepEqual(s.Global, Defaults()) {
		t.Fatalf("init --force then load: %v", err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode().Perm())
	}
}

func TestLoadMissingFileGivesDefaults(t *testing.T) {
	s, err := Load(filepath.Join(t.TempDir(), "none.yaml"))
	if err != nil || !reflect.DeepEqual(s.Global, Defaults()) {
		t.Fatalf("%v", err)
	}
}

func TestWiFiDiscoveryIsValidatedAndTakesEnvironment(t *testing.T) {
	s, err := Parse([]byte("wifi_discovery: builtin\npair_records: /srv/lockdown\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Host.WiFiDiscovery != WiFiBuiltin || s.Host.PairRecords != "/srv/lockdown" {
		t.Fatalf("host settings = %+v", s.Host)
	}
	if s, err := Parse(nil); err != nil || s.Host.WiFiDiscovery != WiFiAuto {
		t.Fatalf("default = %+v, %v", s, err)
	}
	_, err = Parse([]byte("wifi_discovery: bonjour\n"))
	var p *Problem
	if !errors.As(err, &p) || p.Key != "wifi_discovery" || !strings.Contains(p.Fix, "builtin") {
		t.Fatalf("bad mode: %v", err)
	}
	if _, err := Parse([]byte("pair_records: lockdown\n")); err == nil || !strings.Contains(err.Error(), "pair_records") {
		t.Fatalf("relative pair_records accepted: %v", err)
	}
	t.Setenv(EnvName("wifi_discovery"), "off")
	if s, err := Parse(nil); err != nil || s.Host.WiFiDiscovery != WiFiOff {
		t.Fatalf("env override = %+v, %v", s, err)
	}
	if _, err := Parse([]byte("devices:\n  - udid: X\n    wifi_discovery: off\n")); err == nil {
		t.Fatal("a device entry may not set the host-wide wifi_discovery")
	}
}
