package statuspage

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"snapback/internal/testenv"
)

const token = "0123456789abcdef0123456789abcdef0123456789abcdef"

type staticSource struct{ v View }

func (s staticSource) View(context.Context) View { return s.v }

type recorder struct {
	mu    sync.Mutex
	calls []string
}

func (r *recorder) add(s string) error {
	r.mu.Lock()
	r.calls = append(r.calls, s)
	r.mu.Unlock()
	return nil
}
func (r *recorder) BackUpNow(_ context.Context, udid string) error {
	return r.add("backup " + udid)
}
func (r *recorder) Cancel(_ context.Context, udid string) error { return r.add("cancel " + udid) }
func (r *recorder) ApproveDeletion(_ context.Context, udid string) error {
	return r.add("approve " + udid)
}
func (r *recorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

func sampleView() View {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.Local)
	return View{Now: now, Alerts: []string{"ntfy://ntfy.sh/REDACTED"}, Devices: []Device{{
		UDID: "00008030-001A2B3C4D5E802E", Name: "Anna's iPhone", Connected: true, Transport: "USB", State: "Idle",
		LastBackup: &Backup{Time: now.Add(-3 * time.Hour), Size: 41_200_000_000, IOSVersion: "18.2"},
		NextDue:    now.Add(21 * time.Hour), NextWhy: "already backed up today",
		Snapshots: []Snapshot{{ID: "20261204-101500", Time: now.Add(-26 * time.Hour), Size: 812_000_000},
			{ID: "20261203-093000", Time: now.Add(-50 * time.Hour), Size: 1_500_000_000, Archived: true}},
		SnapshotsSize: 2_312_000_000,
		Failures: []Failure{{Time: now.Add(-27 * time.Hour), Class: "device-gone", Message: "The iPhone was disconnected.",
			Remedy: "Reconnect it with USB or bring it back on Wi-Fi; Snapback retries within the backup window."}},
		PendingDeletion:  &Deletion{Snapshots: 2, Bytes: 2_262_000_000},
		LastSuccess:      now.Add(-3 * time.Hour),
		LastRunDuration:  252 * time.Second,
		LastRunBytes:     310_000_000,
		BytesTransferred: 310_000_000,
		FailuresByClass:  map[string]int{"device-gone": 1},
	}}}
}

func serve(t *testing.T, private bool) (*httptest.Server, *recorder) {
	rec := &recorder{}
	h, err := Handler(Options{Source: staticSource{sampleView()}, Actions: rec, Token: token, Private: private})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h) // listens on 127.0.0.1
	t.Cleanup(srv.Close)
	return srv, rec
}

func post(t *testing.T, c *http.Client, u string, hdr map[string]string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

func TestActionsNeedTokenAndSameOrigin(t *testing.T) {
	srv, rec := serve(t, false)
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	u := srv.URL + "/devices/00008030-001A2B3C4D5E802E/backup"
	if code := post(t, c, u, map[string]string{"Origin": srv.URL}); code != http.StatusForbidden {
		t.Fatalf("Back Up Now without the token: %d, want 403", code)
	}
	if code := post(t, c, u, map[string]string{"Authorization": "Bearer wrong"}); code != http.StatusForbidden {
		t.Fatalf("Back Up Now with a wrong token: %d, want 403", code)
	}
	if code := post(t, c, u, map[string]string{"Authorization": "Bearer " + token, "Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}); code != http.StatusForbidden {
		t.Fatalf("cross-origin Back Up Now with the token: %d, want 403", code)
	}
	if len(rec.list()) != 0 {
		t.Fatalf("refused requests reached the app: %v", rec.list())
	}
	if code := post(t, c, u, map[string]string{"Authorization": "Bearer " + token, "Origin": srv.URL, "Sec-Fetch-Site": "same-origin"}); code != http.StatusSeeOther {
		t.Fatalf("same-origin Back Up Now with the token: %d, want 303", code)
	}
	if code := post(t, c, srv.URL+"/devices/X/approve", map[string]string{"Authorization": "Bearer " + token}); code != http.StatusSeeOther {
		t.Fatalf("approve: %d", code)
	}
	if got := rec.list(); strings.Join(got, ",") != "backup 00008030-001A2B3C4D5E802E,approve X" {
		t.Fatalf("actions = %v", got)
	}
}

func TestTokenLinkSetsCookieForTheButtons(t *testing.T) {
	srv, rec := serve(t, true)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	res, err := c.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("private page without the token: %d, want 401", res.StatusCode)
	}
	res, err = c.Get(srv.URL + "/?token=" + token)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || res.Request.URL.RawQuery != "" || !strings.Contains(string(body), "Anna&#39;s iPhone") {
		t.Fatalf("token link: %d at %s", res.StatusCode, res.Request.URL)
	}
	// The browser now posts the form with the cookie, from the page's own origin.
	res, err = c.PostForm(srv.URL+"/devices/A/cancel", url.Values{})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || strings.Join(rec.list(), ",") != "cancel A" {
		t.Fatalf("cancel with the cookie: %d %v", res.StatusCode, rec.list())
	}
}

func TestOneTimeLoginLink(t *testing.T) {
	rec := &recorder{}
	sv, err := Handler(Options{Source: staticSource{sampleView()}, Actions: rec, Token: token, Private: true})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sv)
	defer srv.Close()
	link := sv.LoginURL(srv.URL)
	if strings.Contains(link, token) {
		t.Fatal("the login link carries the token itself")
	}
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	res, err := c.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("login link: %d", res.StatusCode)
	}
	// Used up: a second browser cannot log in with it.
	res, err = http.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden {
		t.Fatalf("reused login link: %d, want 403", res.StatusCode)
	}
	res, err = c.PostForm(srv.URL+"/devices/A/backup", url.Values{})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if strings.Join(rec.list(), ",") != "backup A" {
		t.Fatalf("after the login link the buttons should work: %d %v", res.StatusCode, rec.list())
	}
}

func TestJSONAPI(t *testing.T) {
	srv, _ := serve(t, false)
	res, err := http.Get(srv.URL + "/api/status")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var v View
	if err := json.NewDecoder(res.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	d := v.Devices[0]
	if d.Name != "Anna's iPhone" || d.LastBackup.Size != 41_200_000_000 || len(d.Snapshots) != 2 || d.Failures[0].Remedy == "" {
		t.Fatalf("JSON view = %+v", d)
	}
}

func TestMetricsPassPromtool(t *testing.T) {
	promtool := testenv.RequireTool(t, "promtool")
	srv, _ := serve(t, false)
	res, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(string(body))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s\n%s", err, out, body)
	}
	for _, want := range []string{
		`snapback_last_success_timestamp_seconds{device="Anna's iPhone",udid="00008030-001A2B3C4D5E802E"}`,
		`snapback_failures_total{class="device-gone",device="Anna's iPhone",udid="00008030-001A2B3C4D5E802E"} 1`,
		`snapback_backup_size_bytes{device="Anna's iPhone",udid="00008030-001A2B3C4D5E802E"} 4.12e+10`,
		`snapback_last_run_duration_seconds{device="Anna's iPhone",udid="00008030-001A2B3C4D5E802E"} 252`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s:\n%s", want, body)
		}
	}
}

// chromium renders url headless and returns the DOM; with shot set it also writes a
// phone-sized screenshot there.
func chromium(t *testing.T, u, shot string) string {
	bin := testenv.RequireTool(t, "chromium")
	args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
		"--user-data-dir=" + t.TempDir(), "--window-size=430,900", "--hide-scrollbars"}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, append(args, "--dump-dom", u)...).Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom: %v", err)
	}
	if shot != "" {
		if o, err := exec.CommandContext(ctx, bin, append(args, "--screenshot="+shot, u)...).CombinedOutput(); err != nil {
			t.Fatalf("chromium --screenshot: %v\n%s", err, o)
		}
	}
	return string(out)
}

func TestPageInHeadlessChromium(t *testing.T) {
	srv, _ := serve(t, false)
	shot := filepath.Join(t.TempDir(), "status.png")
	dom := chromium(t, srv.URL+"/", shot)
	if path := os.Getenv("SNAPBACK_SCREENSHOT"); path != "" {
		b, _ := os.ReadFile(shot) // regenerate docs/screenshots/ on request
		os.WriteFile(path, b, 0o644)
	}
	for _, want := range []string{"Anna's iPhone", "connected", "over USB", "41 GB", "iOS 18.2",
		"already backed up today", "812 MB", "1.5 GB", "archived", "The iPhone was disconnected.", "Reconnect it with USB",
		"Back Up Now", "Allow deleting 2 old snapshots"} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered page lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(dom)
	}
	if !strings.Contains(dom, "Read-only") {
		t.Error("without the token the page should say its buttons need it")
	}
	// The link with the token: the browser follows the redirect with the cookie set, and the
	// page knows the buttons will work.
	if in := chromium(t, srv.URL+"/?token="+token, ""); strings.Contains(in, "Read-only") || !strings.Contains(in, "Back Up Now") {
		t.Error("after opening the token link the browser is not logged in")
	}
	if fi, err := os.Stat(shot); err != nil || fi.Size() < 5000 {
		t.Fatalf("screenshot missing or empty: %v", err)
	}
}

func TestTokenFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "state", TokenFile)
	a, err := LoadOrCreateToken(p)
	if err != nil || len(a) != 64 {
		t.Fatalf("new token %q %v", a, err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %o", fi.Mode().Perm())
	}
	if b, err := LoadOrCreateToken(p); err != nil || b != a {
		t.Fatalf("second load %q %v, want the same token", b, err)
	}
	os.Chmod(p, 0o644)
	if _, err := LoadOrCreateToken(p); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable token file: %v", err)
	}
}

func TestPageShowsRunProgressAndCancel(t *testing.T) {
	v := sampleView()
	v.Devices[0].Busy, v.Devices[0].State = true, "Backing up"
	v.Devices[0].Progress = &Progress{Phase: "Transferring", Percent: 42, Bytes: 1_300_000_000, Files: 5120}
	h, err := Handler(Options{Source: staticSource{v}, Actions: &recorder{}, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, httptest.NewRequest(http.MethodGet, "/", nil))
	page := rr.Body.String()
	for _, want := range []string{"Transferring · 42 % · 1.3 GB · 5120 files", `<progress max="100" value="42">`,
		`/devices/00008030-001A2B3C4D5E802E/cancel`, `content="5"`, "running now"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(page, "/backup\"") {
		t.Error("Back Up Now is offered while a backup runs")
	}
	if strings.Contains(page, "<script") {
		t.Error("the page has JavaScript")
	}
}
