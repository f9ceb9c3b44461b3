package settings

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const alertsFile = `
alerts:
  - url: ntfy://ntfy.sh/planted-topic-secret
    events: [passcode, failed]
  - url: keyring:mail
pings: {start: "https://hc.example/planted-ping-uuid/start", success: "keyring:hc", failure: "file:/etc/snapback/fail-url"}
http: {listen: "127.0.0.1:8427"}
devices:
  - udid: 00008110-00000000000000AA
    alerts: []
  - udid: 00008110-00000000000000BB
`

func TestAlertsPingsAndHTTPParse(t *testing.T) {
	s, err := Parse([]byte(alertsFile))
	if err != nil {
		t.Fatal(err)
	}
	want := []Alert{{URL: "ntfy://ntfy.sh/planted-topic-secret", Events: []string{"passcode", "failed"}}, {URL: "keyring:mail"}}
	if !reflect.DeepEqual(s.Global.Alerts, want) {
		t.Fatalf("alerts = %+v", s.Global.Alerts)
	}
	if !want[0].Wants("failed") || want[0].Wants("completed") || !want[1].Wants("damage_found") {
		t.Fatal("Wants: a listed event is wanted, an unlisted one not, no list means all")
	}
	if s.Global.Pings.Success != "keyring:hc" || s.HTTP.Listen != "127.0.0.1:8427" {
		t.Fatalf("pings/http = %+v %+v", s.Global.Pings, s.HTTP)
	}
	// A device's list replaces the global one (an empty list silences the device); a device
	// without the key inherits it.
	if a := s.Effective("00008110-00000000000000AA").Alerts; len(a) != 0 {
		t.Fatalf("device A alerts = %+v, want none", a)
	}
	if b := s.Effective("00008110-00000000000000BB").Alerts; !reflect.DeepEqual(b, want) {
		t.Fatalf("device B alerts = %+v, want the global ones", b)
	}
}

func TestConfigShowRedactsSecrets(t *testing.T) {
	s, err := Parse([]byte(alertsFile))
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.YAML()
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"planted-topic-secret", "planted-ping-uuid"} {
		if strings.Contains(string(out), secret) {
			t.Errorf("config show leaks %q:\n%s", secret, out)
		}
	}
	if !strings.Contains(string(out), "ntfy://ntfy.sh/REDACTED") || !strings.Contains(string(out), "keyring:mail") {
		t.Errorf("config show should name the service and the keychain entry:\n%s", out)
	}
	if _, err := Parse(out); err != nil {
		t.Fatalf("redacted output does not load: %v", err)
	}
}

func TestBadAlertsNameTheirKey(t *testing.T) {
	cases := []struct{ yaml, key string }{
		{"alerts: [{url: ''}]", "alerts[0].url"},
		{"alerts: [{url: 'not a url'}]", "alerts[0].url"},
		{"alerts: [{url: 'smtp://me:hunter2@mail.example:587/?to=a@b'}]", "alerts[0].url"},
		{"alerts: [{url: 'keyring:'}]", "alerts[0].url"},
		{"alerts: [{url: 'file:relative'}]", "alerts[0].url"},
		{"alerts: [{url: 'ntfy://ntfy.sh/x', events: [sometimes]}]", "alerts[0].events"},
		{"pings: {start: 'nope'}", "pings.start"},
		{"devices: [{udid: A, alerts: [{url: x}]}]", "devices[0].alerts[0].url"},
		{"http: {listen: 'everywhere'}", "http.listen"},
		{"http: {listen: '127.0.0.1'}", "http.listen"},
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
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: the error repeats the password: %v", c.yaml, err)
		}
	}
}

type mapSecrets map[string]string

func (m mapSecrets) Get(_ context.Context, k string) (string, error) {
	if v, ok := m[k]; ok {
		return v, nil
	}
	return "", ErrSecretNotFound
}
func (m mapSecrets) Set(context.Context, string, string) error { return nil }
func (m mapSecrets) Delete(context.Context, string) error      { return nil }

func TestResolveURL(t *testing.T) {
	ctx := context.Background()
	sec := mapSecrets{"alert:mail": "smtp://u:p@127.0.0.1:25/?to=a@b\n"}
	if u, err := ResolveURL(ctx, "keyring:mail", sec); err != nil || u != "smtp://u:p@127.0.0.1:25/?to=a@b" {
		t.Fatalf("keyring: %q %v", u, err)
	}
	if _, err := ResolveURL(ctx, "keyring:other", sec); err == nil || !strings.Contains(err.Error(), "snapback alerts set other") {
		t.Fatalf("missing keyring entry: %v", err)
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "url")
	os.WriteFile(p, []byte("ntfy://ntfy.sh/topic-from-file\n"), 0o600)
	if u, err := ResolveURL(ctx, "file:"+p, nil); err != nil || u != "ntfy://ntfy.sh/topic-from-file" {
		t.Fatalf("file: %q %v", u, err)
	}
	for _, mode := range []os.FileMode{0o640, 0o604, 0o660} {
		os.Chmod(p, mode)
		_, err := ResolveURL(ctx, "file:"+p, nil)
		if err == nil || !strings.Contains(err.Error(), "chmod 600 "+p) || strings.Contains(err.Error(), "topic-from-file") {
			t.Fatalf("mode %o: want a refusal with the chmod fix and without the content, got %v", mode, err)
		}
	}
	if u, err := ResolveURL(ctx, "ntfy://ntfy.sh/x", nil); err != nil || u != "ntfy://ntfy.sh/x" {
		t.Fatalf("literal: %q %v", u, err)
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{"127.0.0.1:80": true, "[::1]:80": true, "localhost:1": true, "0.0.0.0:80": false, ":80": false, "192.168.1.2:80": false} {
		if IsLoopback(addr) != want {
			t.Errorf("IsLoopback(%s) != %v", addr, want)
		}
	}
}
