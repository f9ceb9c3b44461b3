package offsite

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"snapback/internal/failure"
	"snapback/settings"
)

func TestParseVersion(t *testing.T) {
	for in, want := range map[string]Version{
		"restic 0.14.0 compiled with go1.19.8 on linux/amd64":                       {0, 14, 0},
		"restic 0.16.4-dev (compiled manually) compiled with go1.22 on linux/amd64": {0, 16, 4},
		"restic 1.2.3": {1, 2, 3},
	} {
		if got, err := ParseVersion(in); err != nil || got != want {
			t.Errorf("ParseVersion(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseVersion("rustic 0.5"); err == nil {
		t.Error("a non-restic version parsed")
	}
	if !(Version{0, 13, 9}).Less(MinVersion()) || (Version{0, 14, 0}).Less(MinVersion()) || (Version{1, 0, 0}).Less(MinVersion()) {
		t.Error("version order")
	}
}

// restic --json output as 0.14 writes it, with the plain-text line it prints even in JSON
// mode, an unknown message type and an error whose value marshals to {}.
func TestParseEvents(t *testing.T) {
	out := `reading repository password from stdin
{"message_type":"status","percent_done":0.5,"total_files":2,"files_done":1,"total_bytes":100,"bytes_done":50,"current_files":["/U/a"]}
{"message_type":"verbose_status","action":"new","item":"/U/a"}
{"message_type":"error","error":{},"during":"archival","item":"/U/b"}
{"message_type":"error","error":{"message":"permission denied"},"during":"scan","item":"/U/c"}
{"message_type":"summary","files_new":2,"files_unmodified":3,"data_added":1234,"total_bytes_processed":100,"snapshot_id":"c3b50340"}
`
	var evs []Event
	sum, err := parseEvents(strings.NewReader(out), func(e Event) { evs = append(evs, e) })
	if err != nil || sum == nil || sum.DataAdded != 1234 || sum.SnapshotID != "c3b50340" || sum.FilesUnmodified != 3 {
		t.Fatalf("summary %+v, %v", sum, err)
	}
	if len(evs) != 4 || evs[0].Kind != EventStatus || evs[0].Status.BytesDone != 50 || evs[0].Status.CurrentFiles[0] != "/U/a" {
		t.Fatalf("events %+v", evs)
	}
	if evs[1].Kind != EventError || evs[1].Error != "archival: /U/b" || evs[2].Error != "scan: /U/c: permission denied" {
		t.Errorf("errors %q, %q", evs[1].Error, evs[2].Error)
	}
}

func TestFatalMessageAndClassify(t *testing.T) {
	stderr := "reading repository password from stdin\nunable to create lock in backend: repository is already locked by PID 8394 on vm by root (UID 0, GID 0)\nlock was created at 2026-12-05 11:14:08 (1.59s ago)\nstorage ID 897fcb7e\nthe `unlock` command can be used to remove stale locks\n"
	e := classify("check", "/r", 1, stderr, nil)
	if e.Kind != KindLocked || !strings.Contains(e.Message, "already locked by PID 8394") || strings.Contains(e.Message, "reading repository password") {
		t.Errorf("%v: %+v", e.Kind, e)
	}
	e = classify("list", "rest:http://127.0.0.1:1/", 1, "Fatal: unable to open config file: client.Head: dial tcp 127.0.0.1:1: connect: connection refused\nIs there a repository at the following location?\nrest:http://127.0.0.1:1/\n", nil)
	if e.Kind != KindNetwork || !strings.HasPrefix(e.Message, "unable to open config file") {
		t.Errorf("%v: %+v", e.Kind, e)
	}
	// restic 0.17+ exit codes.
	for code, k := range map[int]Kind{10: KindNoRepository, 11: KindLocked, 12: KindWrongPassword} {
		if got := classify("x", "r", code, "Fatal: something", nil).Kind; got != k {
			t.Errorf("exit %d: %v, want %v", code, got, k)
		}
	}
}

func TestCleanEnvDropsResticSecrets(t *testing.T) {
	got := cleanEnv([]string{"HOME=/h", "RESTIC_PASSWORD=x", "RESTIC_PASSWORD_COMMAND=y", "RESTIC_REPOSITORY=z", "RESTIC_CACHE_DIR=/c", "AWS_ACCESS_KEY_ID=k"})
	if strings.Join(got, " ") != "HOME=/h RESTIC_CACHE_DIR=/c AWS_ACCESS_KEY_ID=k" {
		t.Errorf("cleanEnv = %v", got)
	}
}

func TestKeepArgsAndTags(t *testing.T) {
	if a := strings.Join(Keep{Last: 2, Daily: 7, Monthly: 12}.args(), " "); a != "--keep-last 2 --keep-daily 7 --keep-monthly 12" {
		t.Errorf("keep args %q", a)
	}
	q := BackupRequest{UDID: "U", DeviceName: "Anna's iPhone, work", SnapshotID: "20260101-000000"}
	if tags := strings.Join(q.Tags(), "|"); tags != "udid:U|device:Anna's iPhone  work|snapback:20260101-000000" {
		t.Errorf("tags %q", tags)
	}
}

func TestDue(t *testing.T) {
	now := time.Date(2026, 3, 4, 15, 0, 0, 0, time.Local)
	repo := settings.Offsite{Repository: "/r"}
	cases := []struct {
		o    settings.Offsite
		last time.Time
		want bool
	}{
		{settings.Offsite{Schedule: settings.OffsiteAfterCommit}, time.Time{}, false},
		{withSchedule(repo, settings.OffsiteManual), time.Time{}, false},
		{withSchedule(repo, settings.OffsiteAfterCommit), now.Add(-time.Minute), true},
		{withSchedule(repo, settings.OffsiteDaily), time.Time{}, true},
		{withSchedule(repo, settings.OffsiteDaily), now.Add(-2 * time.Hour), false},
		{withSchedule(repo, settings.OffsiteDaily), now.Add(-16 * time.Hour), true},
	}
	for i, c := range cases {
		got, why := Due(c.o, c.last, now)
		if got != c.want || why == "" {
			t.Errorf("case %d: Due = %v (%q), want %v", i, got, why, c.want)
		}
	}
}

func withSchedule(o settings.Offsite, s settings.OffsiteSchedule) settings.Offsite {
	o.Schedule = s
	return o
}

func TestFind(t *testing.T) {
	snaps := []Snapshot{
		{ID: "aaaa1111", UDID: "U", SnapbackID: "20260101-000000"},
		{ID: "aaaa2222", UDID: "U", SnapbackID: "20260102-000000"},
		{ID: "bbbb3333", UDID: "U", SnapbackID: "20260102-000000"}, // a raced second copy
		{ID: "cccc4444", UDID: "V", SnapbackID: "20260103-000000"},
	}
	for which, want := range map[string]string{"": "bbbb3333", "latest": "bbbb3333", "20260101-000000": "aaaa1111",
		"20260102-000000": "bbbb3333", "aaaa1": "aaaa1111", "aaaa2222": "aaaa2222"} {
		if got, err := Find(snaps, "U", which); err != nil || got.ID != want {
			t.Errorf("Find(%q) = %s, %v; want %s", which, got.ID, err, want)
		}
	}
	for _, which := range []string{"aaaa", "cccc4444", "20260103-000000", "zz"} {
		if _, err := Find(snaps, "U", which); KindOf(err) != KindNotFound {
			t.Errorf("Find(%q): %v; want not found", which, err)
		}
	}
}

// A keychain that cannot answer is a keychain failure whose remedy is shown once.
func TestLockedKeychainIsAKeychainFailure(t *testing.T) {
	locked := &settings.KeyringError{Op: "get", Kind: settings.KeyringLocked, Err: errors.New("prompt dismissed")}
	r := &Restic{Repository: "/r", Password: func(context.Context) (string, error) { return "", locked }}
	_, err := r.password(context.Background(), "list")
	if failure.ClassOf(err) != failure.Keychain {
		t.Fatalf("%v: class %v", err, failure.ClassOf(err))
	}
	text := failure.Text(err)
	if !strings.Contains(text, "prompt dismissed") || strings.Count(strings.ToLower(text), "unlock your keyring") != 1 {
		t.Errorf("%q: want the cause and the keyring's remedy once", text)
	}
}
