package settings

import (
	"strings"
	"testing"
)

// TestCheckReportsEveryProblemOnceWithLines: types, unknown keys, values and UDIDs are all
// reported by one Parse, in file order, each with its line, its key and a fix.
func TestCheckReportsEveryProblemOnceWithLines(t *testing.T) {
	file := `transprot: usb
schedule:
  max_retries: lots
  window: "25:00-23:00"
encryption: maybe
window: "09:00-10:00"
devices:
  - udid: 00008110-00005a0000000000
    transport: cable
  - udid: 0000-WRONG
  - udid: 00008030-001A2B3C4D5E802E
    snapshots: {keep_daily: many, enabld: true}
`
	_, err := Parse([]byte(file))
	if err == nil {
		t.Fatal("accepted")
	}
	got := strings.Split(err.Error(), "\n")
	want := []string{
		`line 1: transprot: unknown key; fix: did you mean transport?`,
		`line 3: schedule.max_retries: "lots" is not a whole number`,
		`line 4: schedule.window:`,
		`line 5: encryption: "maybe" is not an encryption policy`,
		`line 6: window: unknown key; fix: window belongs under schedule: (write it as schedule.window)`,
		`line 8: devices[0].udid: "00008110-00005a0000000000" has lower-case letters; devices report their UDID in upper case; fix: write it as 00008110-00005A0000000000`,
		`line 9: devices[0].transport: "cable" is not a transport`,
		`line 10: devices[1].udid: "0000-WRONG" is not a UDID: "W" is not a hex digit; fix: copy it from ` + "`snapback devices`",
		`line 12: devices[2].snapshots.keep_daily: "many" is not a whole number`,
		`line 12: devices[2].snapshots.enabld: unknown key; fix: did you mean devices[2].snapshots.enabled?`,
	}
	if len(got) != len(want) {
		t.Errorf("got %d problems, want %d:\n%s", len(got), len(want), err)
	}
	for i := range min(len(got), len(want)) {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("problem %d:\n got %s\nwant %s…", i+1, got[i], want[i])
		}
	}
}

func TestCheckUDID(t *testing.T) {
	for u, ok := range map[string]bool{
		"00008110-001A2B3C4D5E802E":                true,
		"0123456789abcdef0123456789abcdef01234567": true,
		"0123456789ABCDEF0123456789ABCDEF01234567": true,
		"00008110-001a2b3c4d5e802e":                false,
		"00008110001A2B3C4D5E802E":                 false,
		" 00008110-001A2B3C4D5E802E":               false,
		"00008110-001A2B3C4D5E802":                 false,
		"":                                         false,
	} {
		problem, fix := CheckUDID(u)
		if (problem == "") != ok || (problem != "" && fix == "") {
			t.Errorf("CheckUDID(%q) = %q, %q", u, problem, fix)
		}
	}
}

func TestNearestKey(t *testing.T) {
	for typo, want := range map[string]string{"transprot": "transport", "locaton": "location", "encrpytion": "encryption"} {
		if fix := unknownKeyFix(typo, fileSchema, ""); !strings.Contains(fix, "did you mean "+want+"?") {
			t.Errorf("%s: %s", typo, fix)
		}
	}
	if fix := unknownKeyFix("colour", fileSchema, ""); !strings.Contains(fix, "use one of: alerts, conditions, devices,") {
		t.Errorf("colour: %s", fix)
	}
}

// TestCheckListsOfEntries: lists other than devices (alerts) get the same checks: unknown
// keys with the nearest one, entries that are not entries, a list given as one value.
func TestCheckListsOfEntries(t *testing.T) {
	_, err := Parse([]byte("alerts:\n  - url: 'generic://127.0.0.1/x'\n    evnts: [failed]\n  - just-a-url\npings: {start: [1, 2]}\n"))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		"line 3: alerts[0].evnts: unknown key; fix: did you mean alerts[0].events?",
		"line 4: alerts[1]: is not an entry of keys",
		"line 5: pings.start: a list is not a single value",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("lacks %q:\n%s", want, err)
		}
	}
}
