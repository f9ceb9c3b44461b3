package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"snapback/internal/app"
	"snapback/internal/devicesim/backupsim"
	"snapback/internal/failure"
	"snapback/internal/testenv"
	"snapback/jobs"
	"snapback/settings"
	"snapback/settings/settingstest"
)

// until polls cond (state in another process or server) until it holds or d passes.
func until(t *testing.T, d time.Duration, what string, cond func() bool, log *syncBuffer) {
	t.Helper()
	if !testenv.Eventually(d, cond) {
		t.Fatalf("timed out waiting for %s; log:\n%s", what, log.String())
	}
}

// receiver is a loopback HTTP server that records what it is sent.
type receiver struct {
	srv  *httptest.Server
	mu   sync.Mutex
	msgs []map[string]string
	hits []string
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		m := map[string]string{}
		json.Unmarshal(body, &m)
		r.mu.Lock()
		r.msgs = append(r.msgs, m)
		r.hits = append(r.hits, req.URL.Path)
		r.mu.Unlock()
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) find(title, body string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.msgs {
		if strings.Contains(m["title"], title) && strings.Contains(m["message"], body) {
			return true
		}
	}
	return false
}

func (r *receiver) paths(prefix string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, p := range r.hits {
		if strings.HasPrefix(p, prefix) {
			out = append(out, p)
		}
	}
	return out
}

func runCmd(t *testing.T, args ...string) string {
	t.Helper()
	root := &cobra.Command{Use: "snapback", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(newConfigCmd(), newAlertsCmd(), newHTTPCmd())
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		t.Fatalf("snapback %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// TestHeadlessServerTellsUsersWhatIsHappening runs the daemon's engine against two simulated
// iPhones (one healthy, one that fails with error 212) with push alerts, dead-man pings and the
// status page configured, and checks what a server's user relies on: the webhook gets the
// passcode, completed and failed events with device name and remedy while another channel
// hangs; the pings arrive in order; the page in headless chromium shows device, last backup and
// snapshots; Back Up Now needs the token; /metrics passes promtool; no secret leaks.
func TestHeadlessServerTellsUsersWhatIsHappening(t *testing.T) {
	chromium := testenv.RequireTool(t, "chromium")
	promtool := testenv.RequireTool(t, "promtool")
	dir := cfgTestEnv(t)
	const hookSecret = "planted-hook-secret-51c2e0"
	const pingSecret = "planted-ping-secret-9ad7f1"

	hook := newReceiver(t)
	pings := newReceiver(t)
	var hungHits atomic.Int32
	release := make(chan struct{})
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hungHits.Add(1)
		select { // a service that accepts and never answers
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer hung.Close()
	defer close(release)

	sim := startSim(t)
	idA, agentA := addDevice(t, sim, 0, "18.1", 80, backupsim.Options{Files: 60, TotalSize: 1 << 20, Seed: 3, PasscodeDelay: 200 * time.Millisecond})
	idB, agentB := addDevice(t, sim, 1, "18.1", 80, backupsim.Options{Files: 20, TotalSize: 1 << 18, Seed: 4, FailCode: 212})

	withSecrets(t, settingstest.NewSecrets(map[string]string{
		settings.AlertSecretKey("hook"): "generic+" + hook.srv.URL + "/hook?template=json&token=" + hookSecret,
	}))
	pingFile := filepath.Join(dir, "ping-start-url")
	os.WriteFile(pingFile, []byte(pings.srv.URL+"/A/"+pingSecret+"/start\n"), 0o600)
	p := pings.srv.URL
	config := fmt.Sprintf(`schedule: {window: '00:00-24:00'}
conditions: {min_battery: 0}
http: {listen: 'LISTEN'}
alerts:
  - url: keyring:hook
    events: [passcode, completed, failed]
  - url: generic+%s/down?template=json
  - url: nfty://ntfy.sh/%s
devices:
  - udid: %s
    pings: {start: 'file:%s', success: '%s/A/%s/success', failure: '%s/A/%s/fail'}
  - udid: %s
    pings: {start: '%s/B/%s/start', success: '%s/B/%s/success', failure: '%s/B/%s/fail'}
`, hung.URL, pingSecret, idA.UDID, pingFile, p, pingSecret, p, pingSecret, idB.UDID, p, pingSecret, p, pingSecret, p, pingSecret)
	writeConfig(t, dir, strings.Replace(config, "LISTEN", "127.0.0.1:0", 1))

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	log := &syncBuffer{}
	ready := make(chan *jobs.Manager, 1)
	listening := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- app.New(app.Config{Logger: slogTo(log), Secrets: newSecrets(),
			Ready: func(m *jobs.Manager) { ready <- m },
			Listening: func(addr string, _ func() string) {
				select {
				case listening <- addr:
				default:
				}
			},
		}).Run(ctx)
	}()
	var m *jobs.Manager
	select {
	case m = <-ready:
	case err := <-done:
		t.Fatalf("engine stopped: %v\n%s", err, log.String())
	}
	var addr string
	select {
	case addr = <-listening:
	case <-time.After(30 * time.Second):
		t.Fatalf("the status page did not start; log:\n%s", log.String())
	}
	base := "http://" + addr

	// A misspelt service is reported at start, by key, without its secret.
	until(t, 20*time.Second, "the report of the unusable alert URL", func() bool {
		return strings.Contains(log.String(), `msg="alert channel cannot work" key=alerts[2].url`)
	}, log)

	// Both devices are backed up by themselves: A succeeds, B fails with 212.
	until(t, 90*time.Second, "A's backup and B's failure", func() bool {
		return agentA.Counters().Backups >= 1 && agentB.Counters().FailedBackups >= 1 && m.Status().Running == 0
	}, log)
	nameA, nameB := idA.DeviceName, idB.DeviceName
	until(t, 20*time.Second, "passcode, completed and failed on the webhook", func() bool {
		return hook.find("Enter your passcode on "+nameA, "") && hook.find(nameA+" is backed up", "") &&
			hook.find("Backup of "+nameB+" failed", failure.SetupNotFinished.Remedy())
	}, log)
	// The channel that never answers got its messages too, and is still hanging: the backups
	// above did not wait for it.
	if hungHits.Load() == 0 {
		t.Fatal("the hanging channel was never tried")
	}
	until(t, 20*time.Second, "the pings", func() bool {
		return len(pings.paths("/A/")) >= 2 && len(pings.paths("/B/")) >= 2
	}, log)
	wantA := []string{"/A/" + pingSecret + "/start", "/A/" + pingSecret + "/success"}
	wantB := []string{"/B/" + pingSecret + "/start", "/B/" + pingSecret + "/fail"}
	if got := pings.paths("/A/"); strings.Join(got, " ") != strings.Join(wantA, " ") {
		t.Fatalf("A's pings %v, want %v", got, wantA)
	}
	if got := pings.paths("/B/"); strings.Join(got, " ") != strings.Join(wantB, " ") {
		t.Fatalf("B's pings %v, want %v", got, wantB)
	}

	// Back Up Now from the page: refused without the token, a backup with it.
	backupA := base + "/devices/" + idA.UDID + "/backup"
	post := func(auth string) int {
		req, _ := http.NewRequest(http.MethodPost, backupA, nil)
		req.Header.Set("Origin", base)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if code := post(""); code != http.StatusForbidden {
		t.Fatalf("Back Up Now without the token: %d, want 403", code)
	}
	token := strings.TrimSpace(runCmd(t, "http", "token"))
	if code := post(token); code != http.StatusSeeOther {
		t.Fatalf("Back Up Now with the token: %d, want 303", code)
	}
	until(t, 90*time.Second, "the backup started from the page", func() bool {
		return agentA.Counters().Backups >= 2 && m.Status().Running == 0
	}, log)
	if agentA.Counters().Backups != 2 {
		t.Fatalf("backups of A: %d, want 2 (the refused request must not run one)", agentA.Counters().Backups)
	}

	// The page in a real browser: device, last backup, the snapshot the second run made, and
	// B's failure with its remedy.
	bin := chromium
	args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
		"--user-data-dir=" + t.TempDir(), "--window-size=430,1100", "--hide-scrollbars"}
	cctx, ccancel := context.WithTimeout(ctx, 90*time.Second)
	defer ccancel()
	domOut, err := exec.CommandContext(cctx, bin, append(args, "--dump-dom", base+"/")...).Output()
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	dom := string(domOut)
	for _, want := range []string{nameA, nameB, "Last backup", "connected", "over USB", "Snapshots", "Back Up Now",
		failure.SetupNotFinished.Remedy()} {
		if !strings.Contains(dom, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if strings.Contains(dom, "none yet") && strings.Count(dom, "none yet") > 1 {
		t.Error("A's last backup is missing from the page")
	}
	if !strings.Contains(dom, `<table class="snapshots">`) {
		t.Error("the page shows no snapshot table for A after two backups")
	}
	if shot := os.Getenv("SNAPBACK_SCREENSHOT"); shot != "" {
		if out, err := exec.CommandContext(cctx, bin, append(args, "--screenshot="+shot, base+"/")...).CombinedOutput(); err != nil {
			t.Fatalf("screenshot: %v\n%s", err, out)
		}
	}

	get := func(path string) string {
		res, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return string(b)
	}
	metrics := get("/metrics")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(metrics)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
	for _, want := range []string{
		fmt.Sprintf(`snapback_last_success_timestamp_seconds{device=%q,udid=%q}`, nameA, idA.UDID),
		fmt.Sprintf(`snapback_failures_total{class="setup-not-finished",device=%q,udid=%q} 1`, nameB, idB.UDID),
		fmt.Sprintf(`snapback_snapshots{device=%q,udid=%q} 1`, nameA, idA.UDID),
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	api := get("/api/status")

	// No secret from an alert or ping URL in the settings dump, the log, or the page.
	show := runCmd(t, "config", "show")
	for what, text := range map[string]string{"config show": show, "log": log.String(), "page": dom, "api": api, "metrics": metrics} {
		for _, secret := range []string{hookSecret, pingSecret} {
			if strings.Contains(text, secret) {
				t.Errorf("%s contains the secret %q", what, secret)
			}
		}
	}
	if !strings.Contains(show, "keyring:hook") || !strings.Contains(show, "REDACTED") {
		t.Errorf("config show should name keyring:hook and redact literal URLs:\n%s", show)
	}

	// An edit of http.listen moves the page without a restart.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	moved := l.Addr().String()
	l.Close()
	writeConfig(t, dir, strings.Replace(config, "LISTEN", moved, 1))
	select {
	case got := <-listening:
		if got != moved {
			t.Fatalf("the page moved to %s, want %s", got, moved)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the page did not move after the edit; log:\n%s", log.String())
	}
	if res, err := http.Get("http://" + moved + "/api/status"); err != nil || res.StatusCode != 200 {
		t.Fatalf("the moved page does not answer: %v", err)
	}
	if _, err := http.Get(base + "/api/status"); err == nil {
		t.Fatal("the old address still serves after the move")
	}

	cancel()
	if err := <-done; err != nil && ctx.Err() == nil {
		t.Fatal(err)
	}
}
